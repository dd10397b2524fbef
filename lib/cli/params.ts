/** `yolo5 params`: every parameter's name, shape and whether it trains, then a summary. */
import { Command } from 'commander';
import { loadCheckpoint } from '../checkpoint';
import { loadModel } from '../model/load';
import { freezeSpecFromArgs, parseInteger } from './options';

interface ParamsOptions {
  cfg?: string;
  weights?: string;
  nc?: number;
  freeze?: string[];
  json?: boolean;
}

export function paramsCommand(): Command {
  return new Command('params')
    .description('list parameter names and shapes (PyTorch names), and which ones train')
    .option('--cfg <yaml>', 'model yaml, or a bundled config name (yolov5n … yolov5x6)')
    .option('--weights <file>', 'checkpoint or state dict to load')
    .option('--nc <n>', 'number of classes (overrides the config)', parseInteger('--nc', 1))
    .option(
      '--freeze <n...>',
      'freeze N first layers, or the listed layers, or name prefixes/globs',
    )
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: ParamsOptions) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      const model = await loadModel({
        ...(opts.cfg !== undefined ? { cfg: opts.cfg } : {}),
        ...(opts.weights !== undefined ? { weights: opts.weights } : {}),
        ...(opts.nc !== undefined ? { nc: opts.nc } : {}),
        ...(opts.json ? {} : { log: out }),
      });
      const spec = freezeSpecFromArgs(opts.freeze);
      const frozen = spec !== undefined ? model.freeze(spec) : [];
      const params = model.namedParameters();
      const info = model.info();
      const name = modelName(opts.cfg ?? opts.weights ?? 'model');
      if (opts.json) {
        out(JSON.stringify({ model: name, parameters: params, frozen, info }, null, 2));
        return;
      }
      // With --weights: the dtype each tensor has in the file (e.g. float16 in final YOLOv5 weights).
      const fileDtypes = opts.weights
        ? new Map(
            [...(await loadCheckpoint(opts.weights)).state.entries()].map(([k, t]) => [
              k,
              t.dtype as string,
            ]),
          )
        : undefined;
      const width = Math.max(...params.map((p) => p.name.length));
      const head = `${'#'.padStart(4)}  ${'name'.padEnd(width)}  ${'shape'.padEnd(18)}  ${'numel'.padStart(10)}  trains`;
      out(fileDtypes ? `${head}  file dtype` : head);
      params.forEach((p, i) => {
        const row = `${String(i).padStart(4)}  ${p.name.padEnd(width)}  ${`[${p.shape.join(', ')}]`.padEnd(18)}  ${p.numel.toLocaleString('en-US').padStart(10)}  ${p.requiresGrad ? 'yes' : 'no'}`;
        out(fileDtypes ? `${row.padEnd(head.length)}  ${fileDtypes.get(p.name) ?? '-'}` : row);
      });
      if (frozen.length > 0) out(`Froze ${frozen.length} of ${params.length} parameter tensors`);
      out(
        `${name} summary: ${info.layers} layers, ${info.parameters.toLocaleString('en-US')} parameters, ` +
          `${info.gradients.toLocaleString('en-US')} gradients, ${info.gflops.toFixed(1)} GFLOPs`,
      );
    });
}

function modelName(file: string): string {
  return file.replace(/^.*[\\/]/, '').replace(/\.(ya?ml|pt)$/, '');
}

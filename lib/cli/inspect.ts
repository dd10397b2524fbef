/** `yolo5 inspect X.pt`: what a checkpoint holds, without building a model or running anything. */
import { Command } from 'commander';
import { loadCheckpoint, numelOf } from '../checkpoint';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('show what a checkpoint holds: kind, epoch, fitness, names, options, tensors')
    .argument('<file>', 'a .pt file (Python YOLOv5, a state dict, or yolo5)')
    .option('--json', 'print JSON')
    .option('--tensors', 'list every tensor (name, shape, dtype)')
    .action(async (file: string, o: { json?: boolean; tensors?: boolean }) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      const ck = await loadCheckpoint(file);
      const tensors = [...ck.state.entries()].map(([name, t]) => ({
        name,
        shape: t.shape,
        dtype: t.dtype,
      }));
      const dtypes = [...new Set(tensors.map((t) => t.dtype))];
      const params = [...ck.state.values()].reduce((s, t) => s + numelOf(t.shape), 0);
      const summary = {
        file,
        kind: ck.kind,
        epoch: ck.epoch ?? null,
        bestFitness: ck.bestFitness ?? null,
        nc: ck.nc ?? null,
        names: ck.names ?? null,
        stride: ck.stride ?? null,
        date: ck.date ?? null,
        hasEma: ck.modelState !== undefined,
        hasOptimizer: ck.optimizer !== undefined && ck.optimizer !== null,
        tensorCount: tensors.length,
        values: params,
        dtypes,
        opt: ck.opt ?? null,
        hyp: ck.hyp ?? null,
        ...(o.tensors ? { tensors } : {}),
      };
      if (o.json) {
        out(JSON.stringify(summary, null, 2));
        return;
      }
      out(
        `${file}: ${ck.kind === 'yolov5' ? 'Python YOLOv5 checkpoint' : ck.kind === 'yolo5' ? 'yolo5 checkpoint' : 'plain state dict'}`,
      );
      if (ck.epoch !== undefined)
        out(`  epoch: ${ck.epoch}${ck.epoch === -1 ? ' (finished, stripped)' : ''}`);
      if (ck.bestFitness !== undefined && ck.bestFitness !== null)
        out(`  best fitness: ${ck.bestFitness}`);
      if (ck.names) out(`  classes (${ck.names.length}): ${ck.names.join(', ')}`);
      if (ck.stride) out(`  stride: ${ck.stride.join(', ')}`);
      if (ck.date) out(`  date: ${ck.date}`);
      out(
        `  tensors: ${tensors.length} (${params.toLocaleString('en-US')} values, ${dtypes.join('/')})${summary.hasEma ? ', with EMA' : ''}${summary.hasOptimizer ? ', with optimizer state' : ''}`,
      );
      if (ck.opt) {
        const keys = [
          'epochs',
          'batch',
          'batch_size',
          'imgsz',
          'img_size',
          'optimizer',
          'freeze',
          'data',
          'weights',
          'cfg',
        ];
        const shown = keys
          .filter((k) => ck.opt![k] !== undefined)
          .map((k) => `${k}=${JSON.stringify(ck.opt![k])}`);
        if (shown.length) out(`  training options: ${shown.join(' ')}`);
      }
      if (o.tensors)
        for (const t of tensors) out(`  ${t.name}  [${t.shape.join(', ')}]  ${t.dtype}`);
    });
}

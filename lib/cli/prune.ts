/** `yolo5 prune`: global magnitude pruning of a checkpoint's Conv2d weights into a new file. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { Yolo5Error } from '../errors';
import { loadModel } from '../model/load';
import { describePrune } from '../model/prune';
import { makeDirs } from '../native/paths';

interface PruneCliOptions {
  weights: string;
  amount: number;
  out?: string;
  cfg?: string;
  force?: boolean;
  half?: boolean;
  verbose?: boolean;
}

function parseAmount(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n >= 1) {
    throw new InvalidArgumentError(
      `Expected number between 0 and 1 (exclusive) for --amount but received ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/** `runs/train/exp/weights/best.pt`, 0.3 → `runs/train/exp/weights/best-pruned0.3.pt`. */
export function defaultPrunedPath(weights: string, amount: number): string {
  const { dir, name } = path.parse(weights);
  return path.join(dir, `${name}-pruned${amount}.pt`);
}

export function pruneCommand(): Command {
  return new Command('prune')
    .description(
      'zero the smallest-magnitude share of all Conv2d weights (global L1, unstructured) and save a new checkpoint',
    )
    .requiredOption('--weights <file>', 'checkpoint (.pt) to prune')
    .requiredOption('--amount <x>', 'share of conv weights to zero, 0 < x < 1', parseAmount)
    .option('--out <file>', 'pruned checkpoint (default: <weights>-pruned<amount>.pt beside it)')
    .option('--cfg <yaml>', 'model yaml, for weights that are a plain state dict')
    .option('--force', 'overwrite --out if it exists')
    .option('--half', 'store float16 weights, like final YOLOv5 checkpoints')
    .option('--verbose', 'print the sparsity of every conv weight')
    .action(async (o: PruneCliOptions) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      const file = o.out ?? defaultPrunedPath(o.weights, o.amount);
      if (fs.existsSync(file) && !o.force) {
        throw new Yolo5Error('E_FILE', `${file} already exists: pass --force to overwrite it`, {
          file,
        });
      }
      const model = await loadModel({
        weights: o.weights,
        ...(o.cfg !== undefined ? { cfg: o.cfg } : {}),
        // A file written from freshly initialised tensors is never intended: every tensor loads.
        strict: true,
        log: out,
      });
      const r = await model.prune(o.amount);
      if (o.verbose) {
        for (const l of r.layers) {
          out(
            `${l.name.padEnd(28)} ${String(l.numel).padStart(10)} ${((100 * l.zeros) / l.numel).toFixed(1).padStart(6)}%`,
          );
        }
      }
      out(describePrune(r));
      out(
        `${r.convZeros.toLocaleString('en-US')}/${r.convWeights.toLocaleString('en-US')} conv weights are zero (|w| <= ${r.threshold.toPrecision(4)})`,
      );
      makeDirs(path.dirname(path.resolve(file)), 'output folder');
      await model.save(file, { half: o.half === true });
      out(`Saved ${file}`);
      out(
        'Note: unstructured zeros keep every tensor dense; inference is not faster, only the file compresses better.',
      );
    });
}

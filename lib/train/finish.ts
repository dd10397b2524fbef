/**
 * The finish phase: a run that trained to its end (or stopped early) strips its checkpoints (EMA
 * weights as the model, float16, no optimizer, epoch −1) and validates best.pt. best.pt is
 * stripped before last.pt, so a kill in between leaves a last.pt that resumes into this phase.
 */
import * as fs from 'node:fs';
import { loadCheckpoint } from '../checkpoint';
import { writeCheckpointAsync } from '../checkpoint/worker';
import { val, type ValResult } from '../val/val';
import type { Training } from './build';
import type { TrainResult } from './types';

/** Lets the event loop run between long synchronous steps (checkpoint parsing and writing). */
function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function strip(t: Training, file: string): Promise<void> {
  const ck = await loadCheckpoint(file);
  await tick();
  const trainState = ck.meta['train_state'];
  await writeCheckpointAsync(
    file,
    {
      model: ck.state,
      ema: null,
      updates: null,
      epoch: -1,
      bestFitness: ck.bestFitness ?? null,
      yaml: ck.yaml ?? {},
      names: ck.names ?? t.names,
      nc: t.nc,
      stride: t.info.stride,
      hyp: ck.hyp ?? {},
      opt: ck.opt ?? {},
      // Kept so that a finished run can be extended (--resume last.pt --epochs N).
      ...(trainState && typeof trainState === 'object' && !Array.isArray(trainState)
        ? { trainState: trainState as Record<string, unknown> }
        : {}),
    },
    { half: true },
  );
}

/** Strips and validates a finished run; returns the final validation of best.pt (when run). */
export async function finishTraining(
  t: Training,
  status: TrainResult['status'],
  log: (line: string) => void,
): Promise<ValResult | undefined> {
  let finalVal: ValResult | undefined;
  if (!t.main) return undefined; // rank 0 strips, validates and reports
  if (t.opts.noweights) {
    // Nothing was written.
  } else if (status === 'completed' || status === 'early-stopped') {
    for (const f of [t.bestPath, t.lastPath]) if (fs.existsSync(f)) await strip(t, f);
    if (fs.existsSync(t.bestPath)) {
      log(`Validating ${t.bestPath}...`);
      finalVal = await val({
        weights: t.bestPath,
        data: t.data,
        imgsz: t.opts.imgsz,
        batch: (t.opts.batch / (t.dist?.worldSize ?? 1)) * 2, // per rank × 2, as the reference
        singleCls: t.opts.singleCls,
        amp: t.amp, // the precision training ran (and validated) in
        ...t.report?.valPlots(),
        log,
      });
    }
  } else if (!fs.existsSync(t.lastPath)) {
    log('No epoch completed: nothing was saved');
  }
  await t.report?.finish(t.csv);
  log(`Results saved to ${t.saveDir}`);
  return finalVal;
}

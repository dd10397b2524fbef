/// <reference types="node" preserve="true" />
/**
 * `train`: transfer learning with frozen layers. TypeScript decides what to do (data, model,
 * freezing, checkpoints, logs); each epoch runs natively (loader → forward → loss → backward →
 * step → EMA) and reports batches as events. Validation runs on the EMA after every epoch.
 *
 * Phases: resolveTrainOptions (checks and defaults, pure) → prepareResume (reads the checkpoint
 * once) → buildTraining (data, model, freezing, native trainer) → runEpochs → finishTraining.
 */
import * as fs from 'node:fs';
import { defaultJob, type Job } from '../data/builtin';
import { Yolo5Error, show } from '../errors';
import { buildTraining } from './build';
import { finishTraining } from './finish';
import { runEpochs } from './loop';
import { RESUME_OVERRIDES, resolveTrainOptions } from './resolve';
import { prepareResume, repairRun, resumedEpochs, type ResumePoint } from './resume';
import { Run } from './run';
import { emptyTrainState } from './state';
import type { ResolvedTrainOptions, TrainEvents, TrainOptions, TrainResult } from './types';

export type {
  BatchEvent,
  EpochEvent,
  EpochRecord,
  ResolvedTrainOptions,
  TrainEvents,
  TrainOptions,
  TrainResult,
} from './types';
export { imageWeights } from './image-weights';
export { resolveTrainOptions } from './resolve';
export { RESULTS_HEADER } from './state';

/** A running training: a Promise of the result and an emitter of 'batch', 'epoch' and 'log'. */
export class TrainRun extends Run<TrainResult, TrainEvents> {}

/** Starts training; await the returned run for the result, listen to it for progress. */
export function train(opts: TrainOptions = {}): TrainRun {
  return new TrainRun('TrainRun', (self) => runTraining(opts, self));
}

function abortedBeforeStart(): Yolo5Error {
  return new Yolo5Error(
    'E_ABORTED',
    'Training was aborted before its first epoch: nothing was trained',
  );
}

/** Options given with `resume` that differ from the run's own (which hold). */
function ignoredOnResume(input: TrainOptions, opts: ResolvedTrainOptions): string[] {
  const skip = new Set<string>(['resume', 'project', 'signal', 'log', ...RESUME_OVERRIDES]);
  return Object.entries(input)
    .filter(([k, v]) => !skip.has(k) && v !== undefined)
    .filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(opts[k as keyof ResolvedTrainOptions]))
    .map(([k, v]) => `${k} ${show(v)}`);
}

/** The input with the default job's weights, cfg and image size (`weights: ''` means none). */
function withJob(input: TrainOptions, job: Job): TrainOptions {
  const out: TrainOptions = { ...input };
  delete out.weights;
  delete out.cfg;
  delete out.imgsz;
  return {
    ...out,
    ...(job.weights !== undefined ? { weights: job.weights } : {}),
    ...(job.cfg !== undefined ? { cfg: job.cfg } : {}),
    ...(job.imgsz !== undefined ? { imgsz: job.imgsz } : {}),
  };
}

/** The options of this call: a fresh run's, or a resumed run's own (and a new epoch total). */
async function resolveRun(
  input: TrainOptions,
  log: (line: string) => void,
): Promise<{ opts: ResolvedTrainOptions; point?: ResumePoint }> {
  if (!input.resume) {
    // The default job (lib/data/builtin.ts): without data, fine-tune the bundled model.
    const job = defaultJob(input);
    if (job.note !== undefined) log(job.note);
    return { opts: resolveTrainOptions(withJob(input, job)) };
  }
  resolveTrainOptions(input); // the caller's values are checked even where the run's own hold
  const point = await prepareResume(input.resume, input.project);
  const opts = resolveTrainOptions(input, point.saved);
  const ignored = ignoredOnResume(input, opts);
  if (ignored.length > 0)
    log(`WARNING: --resume continues the run with its own options; ignoring ${ignored.join(', ')}`);
  opts.epochs = resumedEpochs(point, opts, input.epochs !== undefined, log);
  await repairRun(point, opts, log);
  return { opts, point };
}

async function runTraining(input: TrainOptions, run: TrainRun): Promise<TrainResult> {
  const log = (line: string) => {
    input.log?.(line);
    run.emit('log', line);
  };
  const signal = input.signal;
  if (signal?.aborted) throw abortedBeforeStart();
  const { opts, point } = await resolveRun(input, log);
  const t = await buildTraining(opts, point, log);
  if (signal?.aborted) {
    // Nothing trained: free the native models now rather than at the next garbage collection.
    t.report.close();
    t.model.dispose();
    t.ema.dispose();
    throw abortedBeforeStart();
  }
  const ck = point?.checkpoint;
  let loop: Awaited<ReturnType<typeof runEpochs>>;
  let finalVal: Awaited<ReturnType<typeof finishTraining>>;
  try {
    loop = await runEpochs(t, {
      run,
      signal,
      log,
      startEpoch: point?.startEpoch ?? 0,
      state: point?.state ?? emptyTrainState(),
      bestFitness: typeof ck?.bestFitness === 'number' ? ck.bestFitness : -Infinity,
    });
    finalVal = await finishTraining(t, loop.status, log);
  } catch (e) {
    t.report.close();
    throw e;
  }
  return {
    status: loop.status,
    saveDir: t.saveDir,
    ...(fs.existsSync(t.lastPath) ? { last: t.lastPath } : {}),
    ...(fs.existsSync(t.bestPath) ? { best: t.bestPath } : {}),
    epochs: loop.records,
    bestFitness: Number.isFinite(loop.bestFitness) ? loop.bestFitness : 0,
    ...(finalVal ? { final: finalVal } : {}),
    frozen: t.frozen,
    trainableParameters: t.info.gradients,
    model: t.model,
    ema: t.ema,
  };
}

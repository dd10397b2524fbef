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
import { nativeCall } from '../native/addon';
import { parseDevice } from '../native/device';
import { buildTraining, type Training } from './build';
import {
  checkDistributedTraining,
  joinDistributed,
  resolveDistributed,
  type Distributed,
} from './dist';
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
  const skip = new Set<string>([
    'resume',
    'project',
    'signal',
    'log',
    'distributed',
    ...RESUME_OVERRIDES,
  ]);
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
  main: boolean,
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
  if (main) await repairRun(point, opts, log); // rank 0 alone writes the run folder
  return { opts, point };
}

/** With another world size than the run's, a resumed run continues, but not as it would have. */
function noteWorldSize(
  point: ResumePoint | undefined,
  worldSize: number,
  log: (l: string) => void,
) {
  const saved = Number(point?.checkpoint.opt?.['worldSize'] ?? 1);
  if (!point || saved === worldSize) return;
  log(
    `WARNING: --resume: ${point.file} was trained with world size ${saved} and continues with ${worldSize}: ` +
      'the global batch, schedule, optimizer and EMA carry on, but each epoch is sharded differently ' +
      '(and BatchNorm statistics come from other per-rank batches), so it will not repeat the run it would have been',
  );
}

/** Joins the group of this call, if any; checks what DDP refuses. */
async function joinRun(
  input: TrainOptions,
  opts: ResolvedTrainOptions,
  point: ResumePoint | undefined,
  log: (line: string) => void,
): Promise<Distributed | undefined> {
  const d = resolveDistributed(input.distributed);
  if (!d) {
    noteWorldSize(point, 1, log);
    if (opts.syncBn)
      log('WARNING: --sync-bn has no effect in a single process (as in the reference)');
    return undefined;
  }
  checkDistributedTraining(d, opts);
  if (opts.device !== undefined && parseDevice(opts.device).startsWith('cuda'))
    opts.device = `cuda:${d.localRank}`; // one device per rank, as torchrun's LOCAL_RANK says
  const dist = await joinDistributed(d, parseDevice(opts.device));
  noteWorldSize(point, d.worldSize, log);
  return dist;
}

async function runTraining(input: TrainOptions, run: TrainRun): Promise<TrainResult> {
  let main = true;
  const log = (line: string) => {
    // Ranks other than 0 say only what is wrong; rank 0 tells the run.
    if (!main && !line.startsWith('WARNING')) return;
    input.log?.(line);
    run.emit('log', line);
  };
  const signal = input.signal;
  if (signal?.aborted) throw abortedBeforeStart();
  const early = resolveDistributed(input.distributed);
  main = !early || early.rank === 0;
  const { opts, point } = await resolveRun(input, log, main);
  const dist = await joinRun(input, opts, point, log);
  let t: Training;
  try {
    t = await buildTraining(opts, point, log, dist);
  } catch (e) {
    dist?.group.leave();
    throw e;
  }
  // With several ranks an interruption stops every rank at the first step, together.
  if (signal?.aborted && !dist) {
    // Nothing trained: free the native models now rather than at the next garbage collection.
    t.report?.close();
    t.trainer.dispose();
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
    // Every rank has seen the last verdict before rank 0 (which serves the store) moves on.
    if (dist) await nativeCall('DDP', () => dist.group.barrier());
    finalVal = await finishTraining(t, loop.status, log);
  } catch (e) {
    t.report?.close();
    throw e;
  } finally {
    // The optimizer's momentum and the loader go now, not at the next garbage collection; the
    // models stay the caller's (result.model, result.ema).
    t.trainer.dispose();
    dist?.group.leave();
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
    amp: t.amp,
    model: t.model,
    ema: t.ema,
  };
}

/**
 * The epoch loop: each epoch runs natively, then the EMA is validated, then the epoch is saved in
 * an order that loses nothing when killed: last.pt (holding every results row and the best
 * epoch), then best.pt's copy, then the results.csv row. An interruption (abort, a signal) stops
 * after the current batch and keeps the last *finished* epoch: the partly trained one is dropped,
 * so the resumed run repeats it from the same state and ends as an uninterrupted run would.
 */
import * as fs from 'node:fs';
import { writeCheckpointAsync } from '../checkpoint/worker';
import { copyCheckpoint, type Yolo5CheckpointData } from '../checkpoint';
import type { NativeEpochStats } from '../native/addon';
import { nativeCall } from '../native/addon';
import { appendText } from '../report/files';
import { val, type ValResult } from '../val/val';
import type { Training } from './build';
import { crashPoint } from './crash';
import { imageWeights } from './image-weights';
import {
  optimizerToPicklable,
  resultsLine,
  stateMap,
  trainStateToPicklable,
  type TrainState,
} from './state';
import type { BatchEvent, EpochEvent, EpochRecord, TrainEvents, TrainResult } from './types';
import type { Run } from './run';

export interface LoopContext {
  run: Run<TrainResult, TrainEvents>;
  signal: AbortSignal | undefined;
  log: (line: string) => void;
  startEpoch: number;
  /** The state after the last finished epoch (updated in place). */
  state: TrainState;
  bestFitness: number;
}

export interface LoopResult {
  status: TrainResult['status'];
  records: EpochRecord[];
  bestFitness: number;
}

/** The checkpoint of the state after `epoch` (fresh tensor copies). */
async function checkpointData(
  t: Training,
  ctx: LoopContext,
  epoch: number,
): Promise<Yolo5CheckpointData> {
  const info = t.trainer.info();
  return {
    model: await stateMap(t.model),
    ema: await stateMap(t.ema),
    updates: info.emaUpdates,
    optimizer: optimizerToPicklable(
      await t.trainer.optimizerState(),
      t.opts.optimizer,
      t.trainer.info().lastOptStep,
    ),
    epoch,
    bestFitness: Number.isFinite(ctx.bestFitness) ? ctx.bestFitness : null,
    yaml: t.model.config as Record<string, unknown>,
    names: t.names,
    nc: t.nc,
    stride: t.info.stride,
    hyp: t.hyp as unknown as Record<string, unknown>,
    opt: t.savedOpt,
    trainState: trainStateToPicklable(ctx.state),
  };
}

async function trainEpoch(t: Training, ctx: LoopContext, epoch: number): Promise<NativeEpochStats> {
  const { epochs, closeMosaic } = t.opts;
  const mosaic = !(closeMosaic > 0 && epoch >= epochs - closeMosaic);
  let lastEmit = 0;
  const stats = await nativeCall('training', () => {
    const running = t.trainer.runEpoch(epoch, mosaic, (p) => {
      const now = Date.now();
      // Throttled to a few events a second; the last batch is always reported.
      if (now - lastEmit >= 200 || p.batch === p.batches - 1) {
        lastEmit = now;
        ctx.run.emit('batch', { ...p, epochs } satisfies BatchEvent);
      }
    });
    // An interrupted rank still joins the epoch: every rank agrees to stop at its first step.
    if (ctx.signal?.aborted) t.trainer.abort();
    return running;
  });
  for (const w of stats.warnings) ctx.log(`WARNING: ${w}`);
  if (epoch === ctx.startEpoch) logGradientTraffic(t, ctx);
  if (stats.skippedSteps > 0) {
    ctx.log(
      `AMP: ${stats.skippedSteps} optimizer step(s) skipped in epoch ${epoch} (inf/NaN gradients in fp16); loss scale now ${stats.lossScale}`,
    );
  }
  return stats;
}

/** What the gradient all-reduce really sent in a step (measured by its hook). */
function logGradientTraffic(t: Training, ctx: LoopContext): void {
  const d = t.trainer.distributedInfo();
  if (!d || d.lastStepBytes === 0) return;
  ctx.log(
    `DDP: ${d.lastStepBytes.toLocaleString('en-US')} bytes of gradients all-reduced per step ` +
      `(${d.parameters.length} tensors in ${d.lastStepBuckets} buckets; frozen ones are not sent)`,
  );
}

async function validate(
  t: Training,
  ctx: LoopContext,
  epoch: number,
): Promise<ValResult | undefined> {
  if (!t.main || (t.opts.noval && epoch !== t.opts.epochs - 1)) return undefined;
  return val({
    model: t.ema,
    data: t.data,
    imgsz: t.opts.imgsz,
    batch: (t.opts.batch / (t.dist?.worldSize ?? 1)) * 2, // per rank × 2, as the reference
    singleCls: t.opts.singleCls,
    loss: t.loss,
    amp: t.amp,
    progress: (done, total) => ctx.run.emit('valBatch', { epoch, done, total }),
    log: () => {},
  });
}

/** Saves a finished epoch: last.pt first (it holds the row and the best epoch), then best.pt. */
async function saveEpoch(
  t: Training,
  ctx: LoopContext,
  epoch: number,
  improved: boolean,
  last: boolean,
): Promise<Yolo5CheckpointData | undefined> {
  if (t.opts.noweights || !t.main) return undefined;
  // --nosave: only the final epoch is written; the others stay in memory for an interruption.
  if (t.opts.nosave && !last) return checkpointData(t, ctx, epoch);
  await writeCheckpointAsync(t.lastPath, await checkpointData(t, ctx, epoch));
  crashPoint('results-row', epoch);
  if (improved) {
    // best.pt is this same file: copy it (atomically) instead of serialising twice.
    await copyCheckpoint(t.lastPath, t.bestPath, () => crashPoint('best-copy', epoch));
  }
  return undefined;
}

/** Ends the loop after an interruption or a bad loss, keeping the last finished epoch. */
async function stopEarly(
  t: Training,
  ctx: LoopContext,
  epoch: number,
  pending: Yolo5CheckpointData | undefined,
  why: 'aborted' | 'non-finite-loss',
): Promise<void> {
  if (!t.main) return;
  if (pending) await writeCheckpointAsync(t.lastPath, pending);
  const kept = fs.existsSync(t.lastPath) && ctx.state.lastEpoch >= 0;
  if (why === 'non-finite-loss') {
    ctx.log(
      `Stopping: the loss became NaN or infinite in epoch ${epoch}; ${kept ? `${t.lastPath} holds the last good epoch` : 'no epoch finished before it'}. Try a lower lr0 or a smaller batch.`,
    );
  } else if (t.opts.noweights) ctx.log(`Aborted during epoch ${epoch}`);
  else if (kept) {
    ctx.log(
      `Aborted during epoch ${epoch}; ${t.lastPath} holds epoch ${ctx.state.lastEpoch} (resumes at epoch ${ctx.state.lastEpoch + 1})`,
    );
  } else ctx.log(`Aborted during epoch ${epoch}; no epoch had finished`);
}

function epochLine(r: EpochRecord, epochs: number): string {
  return (
    `${`${r.epoch}/${epochs - 1}`.padStart(10)}  box ${r.box.toFixed(4)}  obj ${r.obj.toFixed(4)}  cls ${r.cls.toFixed(4)}  ` +
    `P ${r.precision.toFixed(3)}  R ${r.recall.toFixed(3)}  mAP50 ${r.mAP50.toFixed(3)}  mAP50-95 ${r.mAP50_95.toFixed(3)}  ` +
    `${r.seconds.toFixed(1)}s`
  );
}

/** A finished epoch's record, and the run state it leads to. */
function recordEpoch(
  t: Training,
  ctx: LoopContext,
  epoch: number,
  stats: NativeEpochStats,
  r: ValResult | undefined,
): { record: EpochRecord; improved: boolean } {
  const metrics = r?.metrics ?? { precision: 0, recall: 0, mAP50: 0, mAP50_95: 0, fitness: 0 };
  const valLoss: [number, number, number] = r?.loss ?? [0, 0, 0];
  const record: EpochRecord = {
    epoch,
    box: stats.lbox,
    obj: stats.lobj,
    cls: stats.lcls,
    ...metrics,
    valLoss,
    lrs: stats.lrs,
    seconds: stats.seconds,
    images: stats.images,
  };
  const s = ctx.state;
  const improved = metrics.fitness > ctx.bestFitness;
  if (improved) {
    ctx.bestFitness = metrics.fitness;
    s.bestEpoch = epoch;
    s.sinceBest = 0;
  } else if (r) s.sinceBest++; // epochs without validation (noval) do not count for patience
  s.results.push([
    epoch,
    stats.lbox,
    stats.lobj,
    stats.lcls,
    metrics.precision,
    metrics.recall,
    metrics.mAP50,
    metrics.mAP50_95,
    ...valLoss,
    ...stats.lrs,
  ]);
  s.lastEpoch = epoch;
  s.maps = r ? Array.from(r.maps) : null;
  s.updates = t.trainer.info().emaUpdates;
  return { record, improved };
}

/**
 * Whether to stop early after `epoch`: rank 0's verdict (it alone validates), which it shares
 * after saving the epoch (`save`, rank 0 only); the other ranks wait for it.
 */
async function stopDecision(
  t: Training,
  epoch: number,
  stop: boolean,
  save: () => Promise<void>,
): Promise<boolean> {
  if (t.main) await save();
  if (!t.dist) return stop;
  const dist = t.dist;
  const key = `epoch-${epoch}`;
  if (dist.main) {
    await nativeCall('DDP', () => dist.group.set(key, stop ? 'stop' : 'go'));
    return stop;
  }
  return (await nativeCall('DDP', () => dist.group.get(key))) === 'stop';
}

/** Trains epochs `startEpoch` … `epochs − 1`, saving each as it finishes. */
export async function runEpochs(t: Training, ctx: LoopContext): Promise<LoopResult> {
  const { epochs, patience } = t.opts;
  const records: EpochRecord[] = [];
  let status: TrainResult['status'] = 'completed';
  let pending: Yolo5CheckpointData | undefined;
  const onAbort = () => t.trainer.abort();
  ctx.signal?.addEventListener('abort', onAbort);
  try {
    for (let epoch = ctx.startEpoch; epoch < epochs; epoch++) {
      if (ctx.signal?.aborted && !t.dist) status = 'aborted';
      const stats = status === 'aborted' ? undefined : await trainEpoch(t, ctx, epoch);
      if (!stats || stats.aborted || stats.nonFinite) {
        status = stats?.nonFinite ? 'non-finite-loss' : 'aborted';
        await stopEarly(t, ctx, epoch, pending, status);
        break;
      }
      const r = await validate(t, ctx, epoch);
      if (t.opts.imageWeights && !t.opts.rect)
        t.trainer.setSampleWeights(imageWeights(t.trainItems, t.nc, r?.maps));
      const { record, improved } = recordEpoch(t, ctx, epoch, stats, r);
      const final = epoch === epochs - 1;
      const early = !final && patience > 0 && ctx.state.sinceBest >= patience;
      const stop = await stopDecision(t, epoch, early, async () => {
        pending = await saveEpoch(t, ctx, epoch, improved, final || early);
        // The row goes in after the checkpoint, which holds it too: a kill in between loses nothing.
        const row = ctx.state.results.at(-1)!;
        appendText(t.csv, resultsLine(row));
        t.report?.epoch(epoch, row.slice(1));
      });
      records.push(record);
      const event: EpochEvent = { ...record, epochs, best: improved, saveDir: t.saveDir };
      if (r) event.val = r;
      ctx.run.emit('epoch', event);
      ctx.log(epochLine(record, epochs));
      if (stop) {
        status = 'early-stopped';
        ctx.log(
          `Stopping early: no improvement in the last ${patience} epochs; best fitness ${ctx.bestFitness.toFixed(4)}`,
        );
        break;
      }
    }
  } finally {
    ctx.signal?.removeEventListener('abort', onAbort);
  }
  return { status, records, bestFitness: ctx.bestFitness };
}

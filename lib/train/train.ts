/// <reference types="node" preserve="true" />
/**
 * `train`: transfer learning with frozen layers. TypeScript decides what to do (data, model,
 * freezing, checkpoints, logs); each epoch runs natively (loader → forward → loss → backward →
 * step → EMA) and reports batches as events. Validation runs on the EMA after every epoch.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { loadCheckpoint, type HostTensor, type Picklable } from '../checkpoint';
import { writeCheckpointAsync } from '../checkpoint/worker';
import { readDataConfig, type DataConfig } from '../config/data';
import { Yolo5Error, notDownloadedHint, show } from '../errors';
import type { DeviceSpec } from '../native/device';
import type { FreezeSpec } from '../model/freeze';
import { readHyp, type Hyp } from '../config/hyp';
import { type Model } from '../model/model';
import { loadModel } from '../model/load';
import type {
  LossHyp,
  NativeBatchProgress,
  NativeEpochStats,
  NativeOptimizerBuffer,
  NativeTrainer,
  TypedData,
} from '../native/addon';
import { native, nativeCall } from '../native/addon';
import { checkBoolean, checkImageSize, checkInteger } from '../options';
import { makeRunDir } from '../report/runs';
import { version } from '../native/runtime';
import { loadSplit } from '../data/split';
import { defaultJob } from '../data/builtin';
import { ensureSyntheticDataset } from '../data/synthetic';
import { val, type ValResult } from '../val/val';
import { checkAnchors } from './autoanchor';
import { toNativeData } from '../model/weights';

export interface TrainOptions {
  /** Data yaml; default: the built-in synthetic data set (generated on first use). */
  data?: string;
  /** Model yaml or bundled name; default yolov5s when no weights are given. */
  cfg?: string;
  /** Start from these weights (a Python YOLOv5 .pt, a state dict, or our checkpoint). */
  weights?: string;
  /** Hyp yaml or values; default models/hyps/hyp.scratch-low.yaml. */
  hyp?: string | Partial<Hyp>;
  epochs?: number;
  batch?: number;
  imgsz?: number;
  rect?: boolean;
  /** Sample images by class weights that favour poorly detected classes (after each epoch). */
  imageWeights?: boolean;
  /** Resize each batch to a random 0.5–1.5× imgsz (a stride multiple). */
  multiScale?: boolean;
  /** Continue a run: true (the newest last.pt under runs/train) or a last.pt path. */
  resume?: boolean | string;
  /** Only save the final checkpoint. */
  nosave?: boolean;
  /** Only validate after the final epoch. */
  noval?: boolean;
  /**
   * Write no checkpoints at all and skip the final validation of best.pt; the result's metrics
   * are those of the last epoch's EMA (hyperparameter evolution only needs those).
   */
  noweights?: boolean;
  noautoanchor?: boolean;
  /** Keep decoded, resized images in memory. */
  cache?: boolean;
  workers?: number;
  optimizer?: 'SGD' | 'Adam' | 'AdamW';
  cosLr?: boolean;
  labelSmoothing?: number;
  /** Epochs without fitness improvement before stopping. */
  patience?: number;
  /** Layers to freeze: N (first N), [i, j] (those), or name prefixes/globs. */
  freeze?: FreezeSpec;
  /** Also hold frozen layers' BatchNorm statistics (eval mode); by default they still update. */
  freezeBn?: boolean;
  /** Train in NHWC memory order (default true: faster convolutions on CPU, same numbers). */
  channelsLast?: boolean;
  seed?: number;
  singleCls?: boolean;
  /** Turn mosaic off for the last N epochs (0: never, as the reference). */
  closeMosaic?: number;
  project?: string;
  name?: string;
  existOk?: boolean;
  /** Threads for LibTorch (default: all cores). */
  threads?: number;
  /** 'cpu' (default), a CUDA index (0) or 'cuda:N'. */
  device?: DeviceSpec;
  signal?: AbortSignal;
  /** Informational lines (the CLI prints them). */
  log?: (line: string) => void;
}

export interface EpochRecord {
  epoch: number;
  box: number;
  obj: number;
  cls: number;
  precision: number;
  recall: number;
  mAP50: number;
  mAP50_95: number;
  fitness: number;
  /** Validation loss (box, obj, cls); zeros when the epoch was not validated. */
  valLoss: [number, number, number];
  lrs: number[];
  seconds: number;
  images: number;
}

export interface TrainResult {
  status: 'completed' | 'aborted' | 'early-stopped' | 'non-finite-loss';
  saveDir: string;
  last: string;
  best: string;
  epochs: EpochRecord[];
  bestFitness: number;
  /** The final validation of best.pt (absent with noval when training stopped early). */
  final?: ValResult;
  frozen: string[];
  trainableParameters: number;
  /** The trained model (raw weights) and its EMA (what val and the checkpoints use), in memory. */
  model: Model;
  ema: Model;
}

export interface BatchEvent extends NativeBatchProgress {
  epochs: number;
}

/** A running training: a Promise of the result and an emitter of 'batch', 'epoch' and 'log'. */
export class TrainRun extends EventEmitter implements Promise<TrainResult> {
  readonly #promise: Promise<TrainResult>;
  readonly [Symbol.toStringTag] = 'TrainRun';
  constructor(run: (self: TrainRun) => Promise<TrainResult>) {
    super();
    // Let listeners attach before anything is emitted.
    this.#promise = new Promise<void>((r) => setImmediate(r)).then(() => run(this));
  }
  then<A = TrainResult, B = never>(
    onFulfilled?: ((value: TrainResult) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#promise.then(onFulfilled, onRejected);
  }
  catch<B = never>(
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<TrainResult | B> {
    return this.#promise.catch(onRejected);
  }
  finally(onFinally?: (() => void) | null): Promise<TrainResult> {
    return this.#promise.finally(onFinally);
  }
}

export const RESULTS_HEADER = [
  'epoch',
  'train/box_loss',
  'train/obj_loss',
  'train/cls_loss',
  'metrics/precision',
  'metrics/recall',
  'metrics/mAP_0.5',
  'metrics/mAP_0.5:0.95',
  'val/box_loss',
  'val/obj_loss',
  'val/cls_loss',
  'x/lr0',
  'x/lr1',
  'x/lr2',
];

/** Starts training; await the returned run for the result, listen to it for progress. */
export function train(opts: TrainOptions = {}): TrainRun {
  return new TrainRun((self) => runTraining(opts, self));
}

interface Resolved {
  opts: TrainOptions;
  epochs: number;
  batch: number;
  imgsz: number;
  workers: number;
  patience: number;
  seed: number;
  startEpoch: number;
}

function tensor32(name: string, t: { shape: number[]; data: TypedData }): HostTensor {
  if (t.data instanceof Float32Array) return { dtype: 'float32', shape: t.shape, data: t.data };
  if (t.data instanceof BigInt64Array) return { dtype: 'int64', shape: t.shape, data: t.data };
  if (t.data instanceof Float64Array) return { dtype: 'float64', shape: t.shape, data: t.data };
  if (t.data instanceof Int32Array) return { dtype: 'int32', shape: t.shape, data: t.data };
  throw new Yolo5Error('E_NATIVE', `${name}: unexpected tensor type`);
}

async function stateMap(model: Model): Promise<Map<string, HostTensor>> {
  const m = new Map<string, HostTensor>();
  for (const t of await model.getState()) m.set(t.name, tensor32(t.name, t));
  return m;
}

function optimizerToPicklable(
  buffers: NativeOptimizerBuffer[],
  kind: string,
  lastOptStep: number,
): Picklable {
  const state: Record<string, Record<string, HostTensor>> = {};
  for (const b of buffers) {
    (state[b.name] ??= {})[b.key] = { dtype: 'float32', shape: b.shape, data: b.data };
  }
  return { type: kind, last_opt_step: lastOptStep, state };
}

function optimizerFromCheckpoint(value: unknown): {
  buffers: NativeOptimizerBuffer[];
  lastOptStep?: number;
} {
  const buffers: NativeOptimizerBuffer[] = [];
  if (typeof value !== 'object' || value === null) return { buffers };
  const v = value as { state?: Record<string, Record<string, HostTensor>>; last_opt_step?: number };
  for (const [name, keys] of Object.entries(v.state ?? {})) {
    for (const [key, t] of Object.entries(keys)) {
      if (t && typeof t === 'object' && 'data' in t && t.data instanceof Float32Array) {
        buffers.push({ name, key, shape: t.shape, data: t.data });
      }
    }
  }
  return {
    buffers,
    ...(typeof v.last_opt_step === 'number' ? { lastOptStep: v.last_opt_step } : {}),
  };
}

/**
 * --image-weights: each image's weight is the sum over its labels of its class weight, where rare
 * classes and classes with a low mAP50-95 weigh more: (1/count, normalised) · (1 − mAP)² / nc.
 */
export function imageWeights(
  items: { labels: number[][] }[],
  nc: number,
  maps?: Float64Array,
): Float64Array {
  const counts = new Float64Array(nc);
  for (const it of items) for (const l of it.labels) counts[l[0]!]!++;
  const inv = counts.map((c) => 1 / (c === 0 ? 1 : c));
  const sum = inv.reduce((a, b) => a + b, 0);
  const cw = inv.map((v, c) => ((v / sum) * (1 - (maps?.[c] ?? 0)) ** 2) / nc);
  return Float64Array.from(items, (it) => it.labels.reduce((s, l) => s + cw[l[0]!]!, 0));
}

/** Lets the event loop run between long synchronous steps (checkpoint parsing and writing). */
function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function findLastRun(project: string): string {
  if (!fs.existsSync(project)) throw new Yolo5Error('E_FILE', `--resume: no runs in ${project}`);
  let best: { file: string; mtime: number } | undefined;
  for (const d of fs.readdirSync(project)) {
    const f = path.join(project, d, 'weights', 'last.pt');
    if (fs.existsSync(f)) {
      const mtime = fs.statSync(f).mtimeMs;
      if (!best || mtime > best.mtime) best = { file: f, mtime };
    }
  }
  if (!best) throw new Yolo5Error('E_FILE', `--resume: no weights/last.pt under ${project}`);
  return best.file;
}

async function runTraining(input: TrainOptions, run: TrainRun): Promise<TrainResult> {
  const log = (line: string) => {
    input.log?.(line);
    run.emit('log', line);
  };
  let opts = { ...input };
  delete opts.signal;
  delete opts.log;

  // --- resume: the run folder and options come from the checkpoint --------------------------
  let resumeFile: string | undefined;
  if (opts.resume) {
    resumeFile =
      typeof opts.resume === 'string'
        ? opts.resume
        : findLastRun(path.resolve(opts.project ?? path.join('runs', 'train')));
    if (!fs.existsSync(resumeFile))
      throw new Yolo5Error('E_FILE', `--resume: ${resumeFile} not found`, { file: resumeFile });
    const ck = await loadCheckpoint(resumeFile);
    if (ck.kind !== 'yolo5' || ck.epoch === undefined || ck.epoch < 0 || !ck.opt) {
      throw new Yolo5Error(
        'E_CHECKPOINT',
        `--resume: ${resumeFile} is not a resumable yolo5 checkpoint (finished runs are stripped)`,
        {
          file: resumeFile,
        },
      );
    }
    const saved = ck.opt as unknown as TrainOptions;
    // The run continues with its own options and hyperparameters (only --epochs may change).
    opts = {
      ...saved,
      resume: resumeFile,
      ...(ck.hyp ? { hyp: ck.hyp as Partial<Hyp> } : {}),
      ...(input.epochs !== undefined ? { epochs: input.epochs } : {}),
    };
    log(`Resuming training from ${resumeFile} (epoch ${ck.epoch + 1})`);
  }

  // The default job (lib/data/builtin.ts): no --data fine-tunes the bundled model on SHAPES_B.
  const job = defaultJob(opts);
  if (job.note !== undefined && !resumeFile) log(job.note);
  opts = { ...opts, weights: job.weights, cfg: job.cfg, imgsz: job.imgsz };

  const threads = opts.threads ?? os.availableParallelism();
  checkInteger('threads', threads, 1);
  native().setThreads(threads);
  const epochs = checkInteger('epochs', opts.epochs ?? 100, 1);
  const batch = checkInteger('batch', opts.batch ?? 16, 1);
  const workers = checkInteger(
    'workers',
    opts.workers ?? Math.min(8, Math.max(1, os.availableParallelism())),
    0,
  );
  const patience = checkInteger('patience', opts.patience ?? 100, 0);
  const seed = checkInteger('seed', opts.seed ?? 0, 0);
  const closeMosaic = checkInteger('closeMosaic', opts.closeMosaic ?? 0, 0);
  const singleCls = checkBoolean('singleCls', opts.singleCls ?? false);
  const optimizer = opts.optimizer ?? 'SGD';
  if (!['SGD', 'Adam', 'AdamW'].includes(optimizer)) {
    throw new Yolo5Error(
      'E_ARG',
      `Expected SGD, Adam or AdamW for optimizer but received ${show(optimizer)}`,
    );
  }
  const labelSmoothing = opts.labelSmoothing ?? 0;
  if (typeof labelSmoothing !== 'number' || labelSmoothing < 0 || labelSmoothing >= 1) {
    throw new Yolo5Error(
      'E_ARG',
      `Expected number between 0 and 1 for labelSmoothing but received ${show(labelSmoothing)}`,
    );
  }
  if (opts.weights !== undefined && !fs.existsSync(opts.weights)) {
    throw new Yolo5Error(
      'E_FILE',
      `Weights file ${opts.weights} not found. ${notDownloadedHint('weights')}`,
      {
        file: opts.weights,
      },
    );
  }
  const hyp = readHyp(opts.hyp, log);
  // The hyp key `anchors` rebuilds the head with that many anchors per level, left to autoanchor.
  const hypAnchors = resumeFile ? undefined : hyp.anchors;
  if (hypAnchors !== undefined && opts.noautoanchor) {
    throw new Yolo5Error(
      'E_ARG',
      `The hyp sets anchors: ${hypAnchors}, which autoanchor computes: drop noautoanchor or the anchors key`,
      { value: hypAnchors },
    );
  }

  // --- data -----------------------------------------------------------------------------------
  const dataFile = job.data ?? (await ensureSyntheticDataset(job.dataset, undefined, log));
  const data: DataConfig = readDataConfig(dataFile);
  if (!data.train)
    throw new Yolo5Error('E_DATA', `${data.file}: missing train`, { file: data.file });
  if (!data.val) throw new Yolo5Error('E_DATA', `${data.file}: missing val`, { file: data.file });
  const nc = singleCls ? 1 : data.nc;
  const names = singleCls ? ['item'] : data.names;

  // --- model ----------------------------------------------------------------------------------
  const resumeCk = resumeFile ? await loadCheckpoint(resumeFile) : undefined;
  const model = await loadModel({
    ...(resumeFile
      ? { weights: resumeFile }
      : opts.weights !== undefined
        ? { weights: opts.weights }
        : {}),
    ...(opts.cfg !== undefined
      ? { cfg: opts.cfg }
      : opts.weights === undefined && !resumeFile
        ? { cfg: 'yolov5s.yaml' }
        : {}),
    nc,
    names,
    ...(hypAnchors !== undefined ? { anchors: hypAnchors } : {}),
    ...(opts.device !== undefined ? { device: opts.device } : {}),
    log,
  });
  const stride = Math.max(...model.info().stride);
  const imgsz = checkImageSize('imgsz', opts.imgsz ?? 640, stride, log);
  let frozen: string[] = [];
  if (opts.freeze !== undefined && !(typeof opts.freeze === 'number' && opts.freeze === 0)) {
    frozen = model.freeze(opts.freeze);
    const layers = [...new Set(frozen.map((n) => n.split('.').slice(0, 2).join('.')))];
    log(
      `Freezing ${frozen.length} parameter tensors in ${layers.length} layers: ${layers.join(' ')}`,
    );
  }
  const info = model.info();
  const trainable = info.gradients;
  log(
    `Model: ${info.layers} layers, ${info.parameters.toLocaleString('en-US')} parameters, ${trainable.toLocaleString('en-US')} trainable, ${info.gflops.toFixed(1)} GFLOPs`,
  );

  const saveDir = resumeFile
    ? path.dirname(path.dirname(path.resolve(resumeFile)))
    : makeRunDir('train', {
        ...(opts.project ? { project: opts.project } : {}),
        ...(opts.name ? { name: opts.name } : {}),
        existOk: opts.existOk === true,
      });
  const weightsDir = path.join(saveDir, 'weights');
  if (!opts.noweights) fs.mkdirSync(weightsDir, { recursive: true });
  const lastPath = path.join(weightsDir, 'last.pt');
  const bestPath = path.join(weightsDir, 'best.pt');
  const savedOpts = {
    ...opts,
    data: path.resolve(dataFile),
    epochs,
    batch,
    imgsz,
    workers,
    patience,
    seed,
    optimizer,
    device: model.device,
    hyp: undefined,
  };
  delete savedOpts.hyp;
  fs.writeFileSync(path.join(saveDir, 'hyp.yaml'), yaml.dump(hyp));
  fs.writeFileSync(
    path.join(saveDir, 'opt.yaml'),
    yaml.dump(JSON.parse(JSON.stringify(savedOpts))),
  );
  log(`Run folder: ${saveDir}`);

  // --- samples --------------------------------------------------------------------------------
  const trainItems = await loadSplit(data, 'train', log, singleCls);
  const valItems = await loadSplit(data, 'val', log, singleCls);
  if (!opts.noautoanchor && !resumeFile) {
    await checkAnchors(model, trainItems, imgsz, hyp.anchor_t, log, hypAnchors !== undefined);
  }
  const nl = info.stride.length;
  // Loss gains scaled for the number of levels, classes and the image size, as the reference does.
  const lossHyp: LossHyp = {
    box: (hyp.box * 3) / nl,
    cls: ((hyp.cls * nc) / 80) * (3 / nl),
    obj: hyp.obj * (imgsz / 640) ** 2 * (3 / nl),
    cls_pw: hyp.cls_pw,
    obj_pw: hyp.obj_pw,
    anchor_t: hyp.anchor_t,
    fl_gamma: hyp.fl_gamma,
    label_smoothing: labelSmoothing,
  };
  const ema = await model.clone();
  if (resumeCk?.modelState) {
    // The file's `state` (loaded above) is the EMA; training continues from the raw weights.
    await model.loadState(
      [...resumeCk.modelState.entries()].map(([name, t]) => ({
        name,
        shape: t.shape,
        data: toNativeData(t),
      })),
    );
  }
  const samples = trainItems.map((it) => ({
    path: it.file,
    width: it.width,
    height: it.height,
    labels: Float32Array.from(it.labels.flat()),
  }));
  const trainer: NativeTrainer = new (native().NativeTrainer)(
    model.nativeHandle(),
    ema.nativeHandle(),
    samples,
    {
      imgsz,
      batch,
      stride,
      augment: true,
      rect: opts.rect === true,
      cache: opts.cache === true,
      workers,
      seed,
      epochs,
      nbs: 64,
      optimizer,
      cosLr: opts.cosLr === true,
      freezeBn: opts.freezeBn === true,
      channelsLast: opts.channelsLast ?? true,
      multiScale: opts.multiScale === true,
      hyp: hyp as unknown as Record<string, number>,
      loss: lossHyp,
    },
  );
  const tinfo = trainer.info();
  log(
    `Training ${epochs} epochs on ${tinfo.images} images, batch ${batch} (accumulate ${tinfo.accumulate}, weight decay ${tinfo.weightDecay.toPrecision(3)}), ${imgsz} px, ${model.device}, ${threads} threads, ${workers} loader workers`,
  );

  // --- resume state ---------------------------------------------------------------------------
  let startEpoch = 0;
  let bestFitness = -Infinity;
  const records: EpochRecord[] = [];
  if (resumeCk) {
    startEpoch = (resumeCk.epoch ?? -1) + 1;
    bestFitness = typeof resumeCk.bestFitness === 'number' ? resumeCk.bestFitness : -Infinity;
    const opt = optimizerFromCheckpoint(resumeCk.optimizer);
    await trainer.loadOptimizerState(opt.buffers);
    trainer.setCounters({
      emaUpdates: typeof resumeCk.updates === 'number' ? resumeCk.updates : 0,
      lastOptStep: opt.lastOptStep ?? startEpoch * tinfo.batchesPerEpoch - 1,
    });
    if (startEpoch >= epochs)
      throw new Yolo5Error('E_ARG', `--resume: ${resumeFile} already finished ${epochs} epochs`);
  }
  const csv = path.join(saveDir, 'results.csv');
  if (!resumeCk || !fs.existsSync(csv)) fs.writeFileSync(csv, `${RESULTS_HEADER.join(',')}\n`);

  const signal = input.signal;
  const onAbort = () => trainer.abort();
  signal?.addEventListener('abort', onAbort);
  let status: TrainResult['status'] = 'completed';
  let sinceBest = 0;
  let lastSaved = false;
  const checkpointData = async (epoch: number, withOptimizer: boolean) => ({
    model: await stateMap(model),
    ema: await stateMap(ema),
    updates: trainer.info().emaUpdates,
    ...(withOptimizer
      ? {
          optimizer: optimizerToPicklable(
            await trainer.optimizerState(),
            optimizer,
            trainer.info().lastOptStep,
          ),
        }
      : {}),
    epoch,
    bestFitness: Number.isFinite(bestFitness) ? bestFitness : null,
    yaml: model.config as Record<string, unknown>,
    names,
    nc,
    stride: info.stride,
    hyp: hyp as unknown as Record<string, unknown>,
    opt: JSON.parse(JSON.stringify(savedOpts)) as Record<string, unknown>,
  });
  try {
    for (let epoch = startEpoch; epoch < epochs; epoch++) {
      if (signal?.aborted) {
        status = 'aborted';
        break;
      }
      const mosaic = !(closeMosaic > 0 && epoch >= epochs - closeMosaic);
      let lastEmit = 0;
      const stats: NativeEpochStats = await nativeCall('training', () =>
        trainer.runEpoch(epoch, mosaic, (p) => {
          const now = Date.now();
          // Throttled to a few events a second; the last batch is always reported.
          if (now - lastEmit >= 200 || p.batch === p.batches - 1) {
            lastEmit = now;
            run.emit('batch', { ...p, epochs } satisfies BatchEvent);
          }
        }),
      );
      for (const w of stats.warnings) log(`WARNING: ${w}`);
      if (stats.nonFinite) {
        status = 'non-finite-loss';
        log(
          `Stopping: the loss became NaN or infinite in epoch ${epoch}; ${lastPath} holds the last good epoch. Try a lower lr0 or a smaller batch.`,
        );
        break;
      }
      if (stats.aborted) {
        status = 'aborted';
        if (opts.noweights) {
          log(`Aborted during epoch ${epoch}`);
          break;
        }
        await writeCheckpointAsync(lastPath, await checkpointData(epoch - 1, true));
        log(`Aborted during epoch ${epoch}; saved ${lastPath} (resumes at epoch ${epoch})`);
        lastSaved = true;
        break;
      }
      const final = epoch === epochs - 1;
      let metrics = { precision: 0, recall: 0, mAP50: 0, mAP50_95: 0, fitness: 0 };
      let valLoss: [number, number, number] = [0, 0, 0];
      let r: ValResult | undefined;
      if (!opts.noval || final) {
        r = await val({
          model: ema,
          data,
          imgsz,
          batch: batch * 2,
          singleCls,
          loss: lossHyp,
          log: () => {},
        });
        metrics = r.metrics;
        valLoss = r.loss ?? valLoss;
      }
      if (opts.imageWeights && !opts.rect)
        trainer.setSampleWeights(imageWeights(trainItems, nc, r?.maps));
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
      records.push(record);
      const improved = metrics.fitness > bestFitness;
      if (improved) {
        bestFitness = metrics.fitness;
        sinceBest = 0;
      } else if (r) sinceBest++; // epochs without validation (noval) do not count for patience
      if (!opts.noweights && (!opts.nosave || final)) {
        await writeCheckpointAsync(lastPath, await checkpointData(epoch, true));
        if (improved) {
          // best.pt is this same file: copy it (atomically) instead of serialising twice.
          const tmp = `${bestPath}.${process.pid}.tmp`;
          await fs.promises.copyFile(lastPath, tmp);
          await fs.promises.rename(tmp, bestPath);
        }
      }
      // The row goes in after the checkpoint: a run killed in between resumes from a file that
      // matches its log.
      fs.appendFileSync(
        csv,
        `${[
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
        ]
          .map((v) => (Number.isInteger(v) ? String(v) : v.toPrecision(5)))
          .join(',')}\n`,
      );

      run.emit('epoch', record);
      log(
        `${`${epoch}/${epochs - 1}`.padStart(10)}  box ${stats.lbox.toFixed(4)}  obj ${stats.lobj.toFixed(4)}  cls ${stats.lcls.toFixed(4)}  ` +
          `P ${metrics.precision.toFixed(3)}  R ${metrics.recall.toFixed(3)}  mAP50 ${metrics.mAP50.toFixed(3)}  mAP50-95 ${metrics.mAP50_95.toFixed(3)}  ` +
          `${stats.seconds.toFixed(1)}s`,
      );
      if (patience > 0 && sinceBest >= patience && !final) {
        status = 'early-stopped';
        log(
          `Stopping early: no improvement in the last ${patience} epochs; best fitness ${bestFitness.toFixed(4)}`,
        );
        break;
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }

  // --- finish: strip optimizers, EMA weights as the model, half precision ------------------------
  let finalVal: ValResult | undefined;
  if (opts.noweights) {
    // Nothing was written.
  } else if (status !== 'aborted' && status !== 'non-finite-loss') {
    for (const f of [lastPath, bestPath]) {
      if (!fs.existsSync(f)) continue;
      const ck = await loadCheckpoint(f);
      await tick();
      await writeCheckpointAsync(
        f,
        {
          model: ck.state,
          ema: null,
          updates: null,
          epoch: -1,
          bestFitness: ck.bestFitness ?? null,
          yaml: ck.yaml ?? {},
          names: ck.names ?? names,
          nc,
          stride: info.stride,
          hyp: ck.hyp ?? {},
          opt: ck.opt ?? {},
        },
        { half: true },
      );
    }
    if (fs.existsSync(bestPath)) {
      log(`Validating ${bestPath}...`);
      finalVal = await val({ weights: bestPath, data, imgsz, batch: batch * 2, singleCls, log });
    }
  } else if (!lastSaved && !fs.existsSync(lastPath)) {
    log('No epoch completed: nothing was saved');
  }
  log(`Results saved to ${saveDir}`);
  return {
    status,
    saveDir,
    last: lastPath,
    best: bestPath,
    epochs: records,
    bestFitness: Number.isFinite(bestFitness) ? bestFitness : 0,
    ...(finalVal ? { final: finalVal } : {}),
    frozen,
    trainableParameters: trainable,
    model,
    ema,
  };
}

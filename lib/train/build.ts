/**
 * The build phase of a training: data, model (fresh, or from the resumed checkpoint), freezing,
 * the run folder and the native trainer with every option it takes given explicitly.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { readDataConfig, type DataConfig } from '../config/data';
import { HYP_KEYS, readHyp, type Hyp } from '../config/hyp';
import type { ModelConfig } from '../config/model';
import { loadSplit, toNativeSamples, type SplitItem } from '../data/split';
import { BUILTIN_TARGET } from '../data/builtin';
import { Yolo5Error, notDownloadedHint } from '../errors';
import { loadModel } from '../model/load';
import type { Model, ModelInfo } from '../model/model';
import { toNativeData } from '../model/weights';
import {
  native,
  nativeCall,
  type LossHyp,
  type NativeAmp,
  type NativeTrainer,
  type NativeTrainerOptions,
} from '../native/addon';
import { resolveAmp, type AmpChoice } from '../native/amp';
import { makeDirs } from '../native/paths';
import { TRAIN_DEFAULTS, checkImageSize } from '../options';
import { writeTextAtomic } from '../report/files';
import { toReferenceOpt } from '../report/opt';
import { TrainReport } from '../report/run-plots';
import { makeRunDir } from '../report/runs';
import { ampSelfCheck } from './amp';
import { checkAnchors } from './autoanchor';
import { shareFromMain, type Distributed } from './dist';
import { imageWeights } from './image-weights';
import { removeRunTemporaries, type ResumePoint } from './resume';
import { optimizerFromCheckpoint, resultsText } from './state';
import type { ResolvedTrainOptions } from './types';

/** Everything the epoch loop and the finish phase work on. */
export interface Training {
  /** The options, with `data` a path and `imgsz` a multiple of the stride. */
  opts: ResolvedTrainOptions;
  data: DataConfig;
  nc: number;
  names: string[];
  hyp: Hyp;
  loss: LossHyp;
  model: Model;
  ema: Model;
  info: ModelInfo;
  frozen: string[];
  trainItems: SplitItem[];
  trainer: NativeTrainer;
  /** The precision the step (and each epoch's validation) runs in, after the AMP self-check. */
  amp: NativeAmp;
  saveDir: string;
  lastPath: string;
  bestPath: string;
  csv: string;
  /** Each checkpoint's `opt` (camelCase TrainOptions; opt.yaml holds them with the reference's keys). */
  savedOpt: Record<string, unknown>;
  /** Data-parallel: this rank's group (absent: one process). */
  dist?: Distributed;
  /** Writes the run folder, validates and logs: one process, or rank 0. */
  main: boolean;
  /** Plots, mosaics and TensorBoard scalars of the run folder. */
  report?: TrainReport;
}

type Log = (line: string) => void;

/** The data yaml: the given one, or the built-in set (generated on first use). */
async function dataFile(opts: ResolvedTrainOptions, log: Log): Promise<string> {
  // The generator loads only when the built-in data set is used.
  const file =
    opts.data ??
    (await (
      await import('../data/synthetic')
    ).ensureSyntheticDataset(BUILTIN_TARGET, undefined, log));
  if (opts.data === undefined) {
    log(
      `Using the built-in synthetic data set ${file} (${opts.cfg ?? opts.weights}, ${opts.imgsz} px)`,
    );
  }
  return file;
}

function readData(file: string): DataConfig {
  const data = readDataConfig(file);
  if (!data.train)
    throw new Yolo5Error('E_DATA', `${data.file}: missing train`, { file: data.file });
  if (!data.val) throw new Yolo5Error('E_DATA', `${data.file}: missing val`, { file: data.file });
  return data;
}

/** The hyp key `anchors` rebuilds the head with that many anchors per level, left to autoanchor. */
function hypAnchors(hyp: Hyp, opts: ResolvedTrainOptions, resumed: boolean): number | undefined {
  if (resumed || hyp.anchors === undefined) return undefined;
  if (opts.noautoanchor) {
    throw new Yolo5Error(
      'E_ARG',
      `The hyp sets anchors: ${hyp.anchors}, which autoanchor computes: drop noautoanchor or the anchors key`,
      { value: hyp.anchors },
    );
  }
  return hyp.anchors;
}

/** A resumed model: the checkpoint's own config, its EMA weights (strictly), no second read. */
async function resumedModel(
  point: ResumePoint,
  opts: ResolvedTrainOptions,
  nc: number,
  names: string[],
  log: Log,
): Promise<Model> {
  const ck = point.checkpoint;
  if (!ck.yaml) {
    throw new Yolo5Error('E_CHECKPOINT', `--resume: ${point.file} holds no model config`, {
      file: point.file,
    });
  }
  const model = await loadModel({
    cfg: ck.yaml as unknown as ModelConfig,
    nc,
    names,
    ...(opts.device !== undefined ? { device: opts.device } : {}),
  });
  const report = await model.loadState(
    [...ck.state.entries()].map(([name, t]) => ({ name, shape: t.shape, data: toNativeData(t) })),
  );
  const total = model.stateDict().length;
  if (report.missing.length + report.mismatched.length + report.unexpected.length > 0) {
    const names = [...report.missing, ...report.mismatched, ...report.unexpected];
    throw new Yolo5Error(
      'E_WEIGHTS',
      `${point.file} does not fit its model config: ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}`,
      { file: point.file },
    );
  }
  log(`Transferred ${report.loaded}/${total} items from ${point.file}`);
  return model;
}

async function buildModel(
  opts: ResolvedTrainOptions,
  point: ResumePoint | undefined,
  nc: number,
  names: string[],
  anchors: number | undefined,
  log: Log,
): Promise<Model> {
  if (point) return resumedModel(point, opts, nc, names, log);
  if (opts.weights !== undefined && !fs.existsSync(opts.weights)) {
    throw new Yolo5Error(
      'E_FILE',
      `Weights file ${opts.weights} not found. ${notDownloadedHint('weights')}`,
      {
        file: opts.weights,
      },
    );
  }
  return loadModel({
    ...(opts.weights !== undefined ? { weights: opts.weights } : {}),
    ...(opts.cfg !== undefined ? { cfg: opts.cfg } : {}),
    nc,
    names,
    ...(anchors !== undefined ? { anchors } : {}),
    ...(opts.device !== undefined ? { device: opts.device } : {}),
    log,
  });
}

function freezeLayers(model: Model, opts: ResolvedTrainOptions, log: Log): string[] {
  if (opts.freeze === undefined || opts.freeze === 0) return [];
  const frozen = model.freeze(opts.freeze);
  const layers = [...new Set(frozen.map((n) => n.split('.').slice(0, 2).join('.')))];
  log(
    `Freezing ${frozen.length} parameter tensors in ${layers.length} layers: ${layers.join(' ')}`,
  );
  return frozen;
}

/** The run folder: new (hyp.yaml, opt.yaml, results.csv), or the resumed run's own. */
function runFolder(
  opts: ResolvedTrainOptions,
  point: ResumePoint | undefined,
  hyp: Hyp,
  savedOpt: Record<string, unknown>,
  log: Log,
): string {
  const saveDir =
    point?.saveDir ??
    makeRunDir('train', { project: opts.project, name: opts.name, existOk: opts.existOk });
  if (!opts.noweights) makeDirs(path.join(saveDir, 'weights'), 'weights folder');
  if (!point) {
    removeRunTemporaries(saveDir, log);
    writeTextAtomic(path.join(saveDir, 'hyp.yaml'), yaml.dump(hyp));
    writeTextAtomic(path.join(saveDir, 'results.csv'), resultsText([]));
  }
  // A resumed run keeps its opt.yaml unless its options changed (a new epoch total).
  if (!point || point.saved.epochs !== opts.epochs)
    writeTextAtomic(
      path.join(saveDir, 'opt.yaml'),
      yaml.dump(toReferenceOpt(savedOpt, { hyp, saveDir })),
    );
  log(`Run folder: ${saveDir}`);
  return saveDir;
}

/** Loss gains scaled for the number of levels, classes and the image size, as the reference does. */
function lossGains(hyp: Hyp, opts: ResolvedTrainOptions, nl: number, nc: number): LossHyp {
  return {
    box: (hyp.box * 3) / nl,
    cls: ((hyp.cls * nc) / 80) * (3 / nl),
    obj: hyp.obj * (opts.imgsz / 640) ** 2 * (3 / nl),
    cls_pw: hyp.cls_pw,
    obj_pw: hyp.obj_pw,
    anchor_t: hyp.anchor_t,
    fl_gamma: hyp.fl_gamma,
    label_smoothing: opts.labelSmoothing,
  };
}

/** Every field the native trainer takes, from the resolved options and TRAIN_DEFAULTS. */
export function nativeTrainerOptions(
  opts: ResolvedTrainOptions,
  stride: number,
  hyp: Hyp,
  loss: LossHyp,
  dist: Distributed | undefined,
  amp: NativeAmp,
): NativeTrainerOptions {
  return {
    imgsz: opts.imgsz,
    batch: opts.batch,
    stride,
    augment: TRAIN_DEFAULTS.augment,
    rect: opts.rect,
    cache: opts.cache,
    workers: opts.workers,
    seed: opts.seed,
    epochs: opts.epochs,
    nbs: TRAIN_DEFAULTS.nbs,
    optimizer: opts.optimizer,
    cosLr: opts.cosLr,
    freezeBn: opts.freezeBn,
    channelsLast: opts.channelsLast,
    multiScale: opts.multiScale,
    amp,
    // fp16 needs loss scaling (its range ends at 65504); bf16 has fp32's range.
    lossScale: amp === 'fp16' ? TRAIN_DEFAULTS.lossScale : 0,
    hyp: Object.fromEntries(HYP_KEYS.map((k) => [k, hyp[k]])),
    loss,
    ...(dist ? { distributed: { group: dist.group, syncBn: opts.syncBn } } : {}),
    ...testGradients(dist),
  };
}

/** Test hook (README): YOLO5_TEST_GRADIENTS=file gets the first step's gradients (.rankN added). */
function testGradients(dist: Distributed | undefined): { testGradients?: string } {
  const file = process.env.YOLO5_TEST_GRADIENTS;
  if (!file) return {};
  return { testGradients: dist ? `${file}.rank${dist.rank}` : file };
}

/** A resumed trainer: raw weights, optimizer, counters and sample weights as they were saved. */
async function restoreTrainer(t: Training, point: ResumePoint): Promise<void> {
  const ck = point.checkpoint;
  if (ck.modelState) {
    // The file's `state` (loaded above) is the EMA; training continues from the raw weights.
    await t.model.loadState(
      [...ck.modelState.entries()].map(([name, s]) => ({
        name,
        shape: s.shape,
        data: toNativeData(s),
      })),
    );
  }
  const opt = optimizerFromCheckpoint(ck.optimizer);
  if (opt.buffers.length > 0) await t.trainer.loadOptimizerState(opt.buffers);
  t.trainer.setCounters({
    emaUpdates: point.state.updates,
    lastOptStep: opt.lastOptStep ?? point.startEpoch * t.trainer.info().batchesPerEpoch - 1,
  });
  if (t.opts.imageWeights && !t.opts.rect && point.startEpoch > 0) {
    const maps = point.state.maps ? Float64Array.from(point.state.maps) : undefined;
    t.trainer.setSampleWeights(imageWeights(t.trainItems, t.nc, maps));
  }
}

/** The training split, verified once (by rank 0 with several ranks), and the val split checked. */
async function trainSplit(
  data: DataConfig,
  opts: ResolvedTrainOptions,
  dist: Distributed | undefined,
  log: Log,
): Promise<SplitItem[]> {
  return shareFromMain(dist, 'train-items', async () => {
    const items = await loadSplit(data, 'train', log, opts.singleCls);
    await loadSplit(data, 'val', log, opts.singleCls); // checked (and cached) before training starts
    return items;
  });
}

/** A trainer over the model (and its EMA, on rank 0), with every option given. */
function nativeTrainer(
  model: Model,
  ema: Model | undefined,
  items: SplitItem[],
  options: NativeTrainerOptions,
): NativeTrainer {
  return new (native().NativeTrainer)(
    model.nativeHandle(),
    ema ? ema.nativeHandle() : null,
    toNativeSamples(items),
    options,
  );
}

/**
 * The native trainer in the precision `opts.amp` asks for on the model's device; when the AMP
 * self-check fails, a trainer in fp32 instead. Under DDP every rank checks the same weights (rank
 * 0's, broadcast) on the same image, so all ranks come to the same verdict.
 */
async function createTrainer(
  model: Model,
  ema: Model | undefined,
  items: SplitItem[],
  make: (amp: NativeAmp) => NativeTrainerOptions,
  choice: AmpChoice,
  log: Log,
): Promise<{ trainer: NativeTrainer; amp: NativeAmp }> {
  if (choice.note) log(choice.note);
  const trainer = nativeTrainer(model, ema, items, make(choice.amp));
  if (choice.amp === 'off' || (await ampSelfCheck(model, trainer, choice.amp, log)))
    return { trainer, amp: choice.amp };
  trainer.dispose();
  return { trainer: nativeTrainer(model, ema, items, make('off')), amp: 'off' };
}

/** The run folder's plots and TensorBoard file (labels, correlogram, first train batches). */
function startReport(t: Training, point: ResumePoint | undefined, log: Log): Promise<TrainReport> {
  const { saveDir, names, opts } = t;
  const batch = opts.batch / (t.dist?.worldSize ?? 1);
  return TrainReport.start(
    { saveDir, names, plots: !opts.noplots, resumed: point !== undefined, log },
    t.trainItems,
    t.trainer,
    batch,
  );
}

function header(t: Training, log: Log): void {
  const { opts, dist } = t;
  const ti = t.trainer.info();
  if (dist) {
    const bytes = t.info.gradients * 4;
    log(
      `DDP: world size ${dist.worldSize}, backend ${dist.backend} (store ${dist.masterAddr}:${dist.masterPort}); ` +
        `batch ${opts.batch} = ${dist.worldSize} × ${opts.batch / dist.worldSize}; gradients averaged: ` +
        `${t.info.gradients.toLocaleString('en-US')} trainable parameters, ${(bytes / 1e6).toFixed(2)} MB per step` +
        `${opts.syncBn ? '; BatchNorm statistics synchronised (--sync-bn)' : ''}; rank 0 validates and writes`,
    );
  }
  log(
    `Training ${opts.epochs} epochs on ${ti.images} images, batch ${opts.batch} (accumulate ${ti.accumulate}, weight decay ${ti.weightDecay.toPrecision(3)}), ${opts.imgsz} px, ${t.model.device}${t.amp === 'off' ? '' : ` (${t.amp} AMP)`}, ${opts.threads} threads, ${opts.workers} loader workers`,
  );
}

/**
 * Builds a training from resolved options (and the resume point, when resuming). With several
 * ranks, rank 0 finds the data, makes the run folder, verifies the labels and runs autoanchor;
 * the others wait for what it shares, and every rank starts from rank 0's weights.
 */
export async function buildTraining(
  input: ResolvedTrainOptions,
  point: ResumePoint | undefined,
  log: Log,
  dist?: Distributed,
): Promise<Training> {
  const main = !dist || dist.main;
  native().setThreads(input.threads);
  const hyp = readHyp(input.hyp, log);
  const anchors = hypAnchors(hyp, input, point !== undefined);
  const data = readData(await shareFromMain(dist, 'data', () => dataFile(input, log)));
  const nc = input.singleCls ? 1 : data.nc;
  const names = input.singleCls ? ['item'] : data.names;
  const model = await buildModel(input, point, nc, names, anchors, log);
  const ampChoice = resolveAmp(input.amp, model.device); // fp16 on the CPU fails before any file
  const stride = Math.max(...model.info().stride);
  const opts: ResolvedTrainOptions = {
    ...input,
    data: path.resolve(data.file),
    imgsz: checkImageSize('imgsz', input.imgsz, stride, log),
  };
  const frozen = freezeLayers(model, opts, log);
  const info = model.info();
  log(
    `Model: ${info.layers} layers, ${info.parameters.toLocaleString('en-US')} parameters, ${info.gradients.toLocaleString('en-US')} trainable, ${info.gflops.toFixed(1)} GFLOPs`,
  );
  const savedOpt = JSON.parse(
    JSON.stringify({
      ...opts,
      hyp: undefined,
      device: model.device,
      // opt.yaml's local_rank and the world size a --resume compares with.
      ...(dist ? { localRank: dist.localRank, worldSize: dist.worldSize } : {}),
    }),
  ) as Record<string, unknown>;
  const saveDir = await shareFromMain(dist, 'save-dir', async () =>
    runFolder(opts, point, hyp, savedOpt, log),
  );
  const trainItems = await trainSplit(data, opts, dist, log);
  if (main && !opts.noautoanchor && !point) {
    await checkAnchors(model, trainItems, opts.imgsz, hyp.anchor_t, log, anchors !== undefined);
  }
  // Every rank from rank 0's weights (a fresh model's initialisation, autoanchor's anchors).
  if (dist) await nativeCall('DDP', () => dist.group.broadcastModel(model.nativeHandle()));
  const loss = lossGains(hyp, opts, info.stride.length, nc);
  // The EMA lives on rank 0 only (it alone validates and saves); other ranks train the model.
  const ema = main ? await model.clone() : model;
  const { trainer, amp } = await createTrainer(
    model,
    main ? ema : undefined,
    trainItems,
    (a) => nativeTrainerOptions(opts, stride, hyp, loss, dist, a),
    ampChoice,
    log,
  );
  const t: Training = {
    ...{ opts, data, nc, names, hyp, loss, model, ema, info: model.info(), frozen, trainItems },
    trainer,
    amp,
    saveDir,
    lastPath: path.join(saveDir, 'weights', 'last.pt'),
    bestPath: path.join(saveDir, 'weights', 'best.pt'),
    csv: path.join(saveDir, 'results.csv'),
    savedOpt,
    ...(dist ? { dist } : {}),
    main,
  };
  // Rank 0 alone plots and writes TensorBoard events.
  if (main) t.report = await startReport(t, point, log);
  if (point) await restoreTrainer(t, point);
  header(t, log);
  return t;
}

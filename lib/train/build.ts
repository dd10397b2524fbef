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
import { loadSplit, type SplitItem } from '../data/split';
import { BUILTIN_TARGET } from '../data/builtin';
import { Yolo5Error, notDownloadedHint } from '../errors';
import { loadModel } from '../model/load';
import type { Model, ModelInfo } from '../model/model';
import { toNativeData } from '../model/weights';
import {
  native,
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
  /** Plots, mosaics and TensorBoard scalars of the run folder. */
  report: TrainReport;
}

type Log = (line: string) => void;

async function loadData(
  opts: ResolvedTrainOptions,
  log: Log,
): Promise<{ file: string; data: DataConfig }> {
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
  const data = readDataConfig(file);
  if (!data.train)
    throw new Yolo5Error('E_DATA', `${data.file}: missing train`, { file: data.file });
  if (!data.val) throw new Yolo5Error('E_DATA', `${data.file}: missing val`, { file: data.file });
  return { file, data };
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
  };
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

/**
 * The native trainer in the precision `opts.amp` asks for on the model's device; when the AMP
 * self-check fails, a trainer in fp32 instead.
 */
async function createTrainer(
  model: Model,
  ema: Model,
  samples: { path: string; width: number; height: number; labels: Float32Array }[],
  make: (amp: NativeAmp) => NativeTrainerOptions,
  choice: AmpChoice,
  log: Log,
): Promise<{ trainer: NativeTrainer; amp: NativeAmp }> {
  if (choice.note) log(choice.note);
  const build = (amp: NativeAmp) =>
    new (native().NativeTrainer)(model.nativeHandle(), ema.nativeHandle(), samples, make(amp));
  const trainer = build(choice.amp);
  if (choice.amp === 'off' || (await ampSelfCheck(model, trainer, choice.amp, log)))
    return { trainer, amp: choice.amp };
  trainer.dispose();
  return { trainer: build('off'), amp: 'off' };
}

/** Builds a training from resolved options (and the resume point, when resuming). */
export async function buildTraining(
  input: ResolvedTrainOptions,
  point: ResumePoint | undefined,
  log: Log,
): Promise<Training> {
  native().setThreads(input.threads);
  const hyp = readHyp(input.hyp, log);
  const anchors = hypAnchors(hyp, input, point !== undefined);
  const { file: dataFile, data } = await loadData(input, log);
  const nc = input.singleCls ? 1 : data.nc;
  const names = input.singleCls ? ['item'] : data.names;
  const model = await buildModel(input, point, nc, names, anchors, log);
  const ampChoice = resolveAmp(input.amp, model.device); // fp16 on the CPU fails before any file
  const stride = Math.max(...model.info().stride);
  const opts: ResolvedTrainOptions = {
    ...input,
    data: path.resolve(dataFile),
    imgsz: checkImageSize('imgsz', input.imgsz, stride, log),
  };
  const frozen = freezeLayers(model, opts, log);
  const info = model.info();
  log(
    `Model: ${info.layers} layers, ${info.parameters.toLocaleString('en-US')} parameters, ${info.gradients.toLocaleString('en-US')} trainable, ${info.gflops.toFixed(1)} GFLOPs`,
  );
  const savedOpt = JSON.parse(
    JSON.stringify({ ...opts, hyp: undefined, device: model.device }),
  ) as Record<string, unknown>;
  const saveDir = runFolder(opts, point, hyp, savedOpt, log);
  const trainItems = await loadSplit(data, 'train', log, opts.singleCls);
  await loadSplit(data, 'val', log, opts.singleCls); // checked (and cached) before training starts
  if (!opts.noautoanchor && !point) {
    await checkAnchors(model, trainItems, opts.imgsz, hyp.anchor_t, log, anchors !== undefined);
  }
  const loss = lossGains(hyp, opts, info.stride.length, nc);
  const ema = await model.clone();
  const samples = trainItems.map((it) => ({
    path: it.file,
    width: it.width,
    height: it.height,
    labels: Float32Array.from(it.labels.flat()),
  }));
  const { trainer, amp } = await createTrainer(
    model,
    ema,
    samples,
    (a) => nativeTrainerOptions(opts, stride, hyp, loss, a),
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
    report: await TrainReport.start(
      { saveDir, names, plots: !opts.noplots, resumed: point !== undefined, log },
      trainItems,
      trainer,
      opts.batch,
    ),
  };
  if (point) await restoreTrainer(t, point);
  const ti = trainer.info();
  log(
    `Training ${opts.epochs} epochs on ${ti.images} images, batch ${opts.batch} (accumulate ${ti.accumulate}, weight decay ${ti.weightDecay.toPrecision(3)}), ${opts.imgsz} px, ${model.device}${amp === 'off' ? '' : ` (${amp} AMP)`}, ${opts.threads} threads, ${opts.workers} loader workers`,
  );
  return t;
}

/**
 * `val`: the reference's validation — rect batches, letterbox, NMS at conf 0.001 / IoU 0.6
 * multi-label, matching at IoU 0.50:0.95, AP by 101-point interpolation, P/R at max F1.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readDataConfig, type DataConfig } from '../config/data';
import type { DeviceSpec } from '../native/device';
import { Yolo5Error, show } from '../errors';
import { ConfusionMatrix, DetectionStats, type DetectionMetrics } from './metrics';
import { predictorDevice, predictorStride, type Ensemble, type Predictor } from '../model/ensemble';
import { Model } from '../model/model';
import { loadModel, singleOrMany } from '../model/load';
import { native, type LossHyp } from '../native/addon';
import { resolveAmp } from '../native/amp';
import {
  TRAIN_DEFAULTS,
  checkBoolean,
  checkImageSize,
  checkInteger,
  checkNumber,
  type AmpMode,
} from '../options';
import { makeRunDir } from '../report/runs';
import { writeValPlots, type ValBatchPlot } from '../report/run-plots';
import { loadSplit, rectBatches, type SplitItem } from '../data/split';

export interface ValOptions {
  /** A loaded model or ensemble, or `weights` (+ `cfg` for a plain state dict) to load. */
  model?: Model | Ensemble;
  /** A checkpoint, or several: an ensemble whose predictions join before one NMS. */
  weights?: string | readonly string[];
  cfg?: string;
  /** Where `weights` run: 'cpu' (default), a CUDA index (0) or 'cuda:N'. */
  device?: DeviceSpec;
  /** Data yaml path, or an already read config. */
  data: string | DataConfig;
  imgsz?: number;
  batch?: number;
  conf?: number;
  iou?: number;
  maxDet?: number;
  task?: 'val' | 'test' | 'train';
  singleCls?: boolean;
  /** Print per-class rows. */
  verbose?: boolean;
  saveTxt?: boolean;
  saveConf?: boolean;
  saveJson?: boolean;
  /** Run folder (only made when something is saved, or `save: true`). */
  project?: string;
  name?: string;
  existOk?: boolean;
  save?: boolean;
  /** Also compute the loss on the set (training passes its scaled gains); one model, no augment. */
  loss?: LossHyp;
  /** Test-time augmentation: scales 1, 0.83 (flipped), 0.67, merged before NMS. */
  augment?: boolean;
  /** Mixed precision for the forward passes ('auto' default: as training's, see AMP_MODES). */
  amp?: AmpMode;
  /**
   * Curves, confusion matrix and val_batch mosaics: true (default when a run folder is made)
   * writes them there, a string into that folder, false nowhere.
   */
  plots?: boolean | string;
  /** Called after each batch (a progress bar). */
  progress?: (done: number, total: number) => void;
  log?: (line: string) => void;
}

export interface ClassMetrics {
  class: number;
  name: string;
  images: number;
  instances: number;
  precision: number;
  recall: number;
  mAP50: number;
  mAP50_95: number;
}

export interface ValMetrics {
  precision: number;
  recall: number;
  mAP50: number;
  mAP50_95: number;
  fitness: number;
}

export interface ValResult {
  metrics: ValMetrics;
  perClass: ClassMetrics[];
  /** Milliseconds per image. */
  speed: { preprocess: number; inference: number; nms: number };
  /** (nc + 1)² counts: rows predicted class (last = background), columns true class. */
  confusion: number[][];
  images: number;
  instances: number;
  /** The report printed (header, all, per-class rows). */
  table: string;
  /** mAP50-95 for every class id (the overall value for classes without labels). */
  maps: Float64Array;
  /** Mean box, obj, cls loss per batch (with `loss`). */
  loss?: [number, number, number];
  saveDir?: string;
}

function fmt(v: number): string {
  // Python's %11.3g
  if (v === 0) return '0';
  const s = v.toPrecision(3);
  return s.includes('e') ? s.replace(/e([+-])(\d)$/, 'e$10$2') : String(Number(s));
}

export function formatRow(
  name: string,
  images: number,
  instances: number,
  p: number,
  r: number,
  m50: number,
  m: number,
): string {
  return (
    name.padStart(22) +
    [images, instances].map((x) => String(x).padStart(11)).join('') +
    [p, r, m50, m].map((x) => fmt(x).padStart(11)).join('')
  );
}

export const VAL_HEADER =
  'Class'.padStart(22) +
  ['Images', 'Instances', 'P', 'R', 'mAP50', 'mAP50-95'].map((s) => s.padStart(11)).join('');

export async function val(opts: ValOptions): Promise<ValResult> {
  const log = opts.log ?? (() => {});
  const data = typeof opts.data === 'string' ? readDataConfig(opts.data) : opts.data;
  const augment = checkBoolean('augment', opts.augment ?? false);
  if (augment && opts.loss) {
    throw new Yolo5Error(
      'E_ARG',
      'The val loss is computed without test-time augmentation: pass loss or augment, not both',
    );
  }
  const { model, singleCls, nc, names } = await valModel(opts, data, log);
  const stride = predictorStride(model);
  const imgsz = checkImageSize('imgsz', opts.imgsz ?? 640, stride, log);
  const batch = checkInteger('batch', opts.batch ?? 32, 1);
  const conf = checkNumber('conf', opts.conf ?? 0.001, 0, 1);
  const iou = checkNumber('iou', opts.iou ?? 0.6, 0, 1);
  const maxDet = checkInteger('maxDet', opts.maxDet ?? 300, 1);
  const task = opts.task ?? 'val';
  const { amp, note } = resolveAmp(opts.amp ?? TRAIN_DEFAULTS.amp, predictorDevice(model));
  if (note) log(note);
  const items = await loadSplit(data, task, log, singleCls);

  const wantsDir = opts.saveTxt || opts.saveJson || opts.save;
  const saveDir = wantsDir
    ? makeRunDir('val', {
        ...(opts.project ? { project: opts.project } : {}),
        ...(opts.name ? { name: opts.name } : {}),
        existOk: opts.existOk === true,
      })
    : undefined;
  if (saveDir && opts.saveTxt) fs.mkdirSync(path.join(saveDir, 'labels'), { recursive: true });

  const stats = new DetectionStats();
  const confusion = new ConfusionMatrix(nc);
  const jsonDets: ImageScoring['jsonDets'] = [];
  const timing = { pre: 0, inference: 0, nms: 0, images: 0 };
  const lossSum = [0, 0, 0];
  let lossBatches = 0;
  const plotDir =
    opts.plots === false ? undefined : typeof opts.plots === 'string' ? opts.plots : saveDir;
  const plotBatches: ValBatchPlot[] = [];
  const batches = rectBatches(items, batch, imgsz, stride);
  for (const [bi, b] of batches.entries()) {
    const { results, timing: t } = await model.predict(
      b.indices.map((i) => items[i]!.file),
      {
        imgsz,
        shape: b.shape,
        conf,
        iou,
        multiLabel: true,
        agnostic: singleCls,
        maxDet,
        augment,
        amp,
        ...(opts.loss
          ? {
              loss: opts.loss,
              labels: b.indices.map((i) => Float32Array.from(items[i]!.labels.flat())),
            }
          : {}),
      },
    );
    if (t.loss) {
      lossSum.forEach((_, j) => (lossSum[j]! += t.loss![j]!));
      lossBatches++;
    }
    timing.pre += t.pre;
    timing.inference += t.inference;
    timing.nms += t.nms;
    timing.images += t.images;
    if (plotDir && bi < 3) plotBatches.push(batchPlot(b.indices, items, results));
    opts.progress?.(bi + 1, batches.length);
    b.indices.forEach((idx, k) => {
      const item = items[idx]!;
      const r = results[k]!;
      if (!r.ok) log(`WARNING: ${item.file}: ${r.error}`);
      else scoreImage(item, r.detections, { stats, confusion, singleCls, saveDir, opts, jsonDets });
    });
  }

  const m = stats.compute(nc, names);
  const n = Math.max(timing.images, 1);
  const speed = {
    preprocess: timing.pre / n,
    inference: timing.inference / n,
    nms: timing.nms / n,
  };
  const lines = reportLines(m, nc, task, opts.verbose === true, speed, batch, imgsz);
  const table = lines.join('\n');
  for (const l of lines) log(l);
  if (plotDir) {
    await writeValPlots(plotDir, {
      curves: m.curves,
      classes: m.perClass.map((c) => ({ name: c.name, ap50: c.ap50 })),
      confusion: confusion.toArray(),
      names,
      batches: plotBatches,
    });
  }
  const result = valResult(
    m,
    confusion,
    speed,
    table,
    lossBatches > 0 ? lossSum.map((v) => v / lossBatches) : undefined,
  );
  if (saveDir) {
    result.saveDir = saveDir;
    fs.writeFileSync(path.join(saveDir, 'results.txt'), `${table}\n`);
    fs.writeFileSync(
      path.join(saveDir, 'metrics.json'),
      `${JSON.stringify({ ...result, table: undefined }, null, 2)}\n`,
    );
    if (opts.saveJson)
      fs.writeFileSync(path.join(saveDir, 'predictions.json'), JSON.stringify(jsonDets));
    log(`Results saved to ${saveDir}`);
  }
  return result;
}

/** The model to validate (given or loaded) and its classes, checked against the data set. */
async function valModel(
  opts: ValOptions,
  data: DataConfig,
  log: (line: string) => void,
): Promise<{ model: Predictor; singleCls: boolean; nc: number; names: readonly string[] }> {
  const model: Predictor =
    opts.model ??
    (await loadModel({
      ...(opts.weights !== undefined ? { weights: singleOrMany(opts.weights) } : {}),
      ...(opts.cfg !== undefined ? { cfg: opts.cfg } : {}),
      ...(opts.cfg !== undefined && opts.weights === undefined ? { nc: data.nc } : {}),
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      // Inference on freshly initialised tensors is never intended: every tensor must load.
      strict: true,
      log,
    }));
  const singleCls = checkBoolean('singleCls', opts.singleCls ?? false);
  const nc = singleCls ? 1 : model.nc;
  if (!singleCls && model.nc !== data.nc) {
    throw new Yolo5Error(
      'E_DATA',
      `The model has ${model.nc} classes but ${data.file} has ${data.nc}: pass matching weights and data`,
      {
        file: data.file,
      },
    );
  }
  const names = singleCls ? ['item'] : model.names.length === nc ? model.names : data.names;
  if (opts.loss && !(model instanceof Model) && model.models.length > 1) {
    throw new Yolo5Error(
      'E_ARG',
      `The val loss is computed for one model but received an ensemble of ${model.models.length}`,
    );
  }
  return { model, singleCls, nc, names };
}

type ImageScoring = {
  stats: DetectionStats;
  confusion: ConfusionMatrix;
  singleCls: boolean;
  saveDir: string | undefined;
  opts: ValOptions;
  jsonDets: { image_id: string | number; category_id: number; bbox: number[]; score: number }[];
};

/** Matches one image's detections to its labels; writes its txt rows and JSON entries. */
function scoreImage(item: SplitItem, dets: Float32Array, c: ImageScoring): void {
  if (c.singleCls) for (let j = 5; j < dets.length; j += 6) dets[j] = 0;
  const labels = item.labels.map(([cls, cx, cy, w, h]) => [
    cls!,
    (cx! - w! / 2) * item.width,
    (cy! - h! / 2) * item.height,
    (cx! + w! / 2) * item.width,
    (cy! + h! / 2) * item.height,
  ]);
  c.stats.addImage(dets, labels);
  c.confusion.processBatch(dets, labels);
  if (c.saveDir && c.opts.saveTxt)
    writeTxt(
      path.join(c.saveDir, 'labels', `${path.parse(item.file).name}.txt`),
      dets,
      item,
      c.opts.saveConf === true,
    );
  if (c.opts.saveJson) {
    const stem = path.parse(item.file).name;
    const id = /^\d+$/.test(stem) ? Number(stem) : stem;
    for (let j = 0; j + 6 <= dets.length; j += 6) {
      const [x1, y1, x2, y2, score, cls] = Array.from(dets.subarray(j, j + 6));
      c.jsonDets.push({
        image_id: id,
        category_id: cls!,
        bbox: [x1!, y1!, x2! - x1!, y2! - y1!].map((v) => Math.round(v * 1000) / 1000),
        score: Math.round(score! * 1e5) / 1e5,
      });
    }
  }
}

/** The reference's table: header, all, per-class rows (2–49 classes or verbose), speed. */
function reportLines(
  m: DetectionMetrics,
  nc: number,
  task: string,
  verbose: boolean,
  speed: ValResult['speed'],
  batch: number,
  imgsz: number,
): string[] {
  const lines = [
    VAL_HEADER,
    formatRow('all', m.seen, m.instances, m.precision, m.recall, m.mAP50, m.mAP50_95),
  ];
  if (m.instances === 0)
    lines.push(
      `WARNING: no labels found in the ${task} set, cannot compute metrics without labels`,
    );
  if (verbose || (nc < 50 && nc > 1)) {
    for (const c of m.perClass)
      lines.push(formatRow(c.name, m.seen, c.instances, c.precision, c.recall, c.ap50, c.ap50_95));
  }
  lines.push(
    `Speed: ${speed.preprocess.toFixed(1)}ms pre-process, ${speed.inference.toFixed(1)}ms inference, ${speed.nms.toFixed(1)}ms NMS per image at shape (${batch}, 3, ${imgsz}, ${imgsz})`,
  );
  return lines;
}

function valResult(
  m: DetectionMetrics,
  confusion: ConfusionMatrix,
  speed: ValResult['speed'],
  table: string,
  loss: number[] | undefined,
): ValResult {
  return {
    metrics: {
      precision: m.precision,
      recall: m.recall,
      mAP50: m.mAP50,
      mAP50_95: m.mAP50_95,
      fitness: m.fitness,
    },
    perClass: m.perClass.map((c) => ({
      class: c.class,
      name: c.name,
      images: c.images,
      instances: c.instances,
      precision: c.precision,
      recall: c.recall,
      mAP50: c.ap50,
      mAP50_95: c.ap50_95,
    })),
    speed,
    confusion: confusion.toArray(),
    images: m.seen,
    instances: m.instances,
    maps: m.maps,
    table,
    ...(loss ? { loss: loss as [number, number, number] } : {}),
  };
}

function batchPlot(
  indices: number[],
  items: SplitItem[],
  results: { ok: boolean; detections: Float32Array; width: number; height: number }[],
): ValBatchPlot {
  return {
    files: indices.map((i) => items[i]!.file),
    labels: indices.map((i) => items[i]!.labels),
    detections: results.map((r) => ({ rows: r.detections, width: r.width, height: r.height })),
  };
}

function writeTxt(file: string, dets: Float32Array, item: SplitItem, withConf: boolean): void {
  const rows: string[] = [];
  for (let j = 0; j + 6 <= dets.length; j += 6) {
    const [x1, y1, x2, y2, c, cls] = Array.from(dets.subarray(j, j + 6));
    const v = [
      (x1! + x2!) / 2 / item.width,
      (y1! + y2!) / 2 / item.height,
      (x2! - x1!) / item.width,
      (y2! - y1!) / item.height,
    ];
    if (withConf) v.push(c!);
    rows.push([cls, ...v.map((x) => Number(x.toPrecision(6)))].join(' '));
  }
  fs.writeFileSync(file, rows.length ? `${rows.join('\n')}\n` : '');
}

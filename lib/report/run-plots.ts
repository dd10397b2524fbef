/**
 * What train and val hand to the plots: validation's curves, confusion matrix and first batches,
 * and training's labels, first mosaics and TensorBoard scalars. Each step is timed and logged so
 * plotting stays visibly off the epoch's hot path.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeMosaic, type MosaicTile } from './mosaic';
import {
  plotConfusionMatrix,
  plotCorrelogram,
  plotCurves,
  plotLabels,
  plotResults,
  type CurveData,
} from './plots';
import { EventWriter } from './tensorboard';

/** results.csv's columns after `epoch`, also the TensorBoard scalar tags. */
export const SCALAR_TAGS = [
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

/** One validation batch for val_batch{i}_labels.jpg / _pred.jpg. */
export interface ValBatchPlot {
  files: string[];
  /** Per image: label rows (class, cx, cy, w, h) normalised. */
  labels: ArrayLike<number>[][];
  /** Per image: detections (x1, y1, x2, y2, conf, class) in source pixels, and its size. */
  detections: { rows: Float32Array; width: number; height: number }[];
}

export interface ValPlotData {
  curves: CurveData | null;
  classes: readonly { name: string; ap50: number }[];
  confusion: readonly (readonly number[])[];
  names: readonly string[];
  batches: ValBatchPlot[];
}

function predRows(d: ValBatchPlot['detections'][number]): number[][] {
  const out: number[][] = [];
  for (let j = 0; j + 6 <= d.rows.length; j += 6) {
    const [x1, y1, x2, y2, conf, cls] = Array.from(d.rows.subarray(j, j + 6));
    out.push([
      cls!,
      (x1! + x2!) / 2 / d.width,
      (y1! + y2!) / 2 / d.height,
      (x2! - x1!) / d.width,
      (y2! - y1!) / d.height,
      conf!,
    ]);
  }
  return out;
}

/** Curves, confusion matrix and val_batch mosaics into `dir`; returns the files written. */
export async function writeValPlots(dir: string, data: ValPlotData): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  if (data.curves) files.push(...(await plotCurves(dir, data.curves, data.classes)));
  const cm = path.join(dir, 'confusion_matrix.png');
  await plotConfusionMatrix(cm, data.confusion, data.names);
  files.push(cm);
  for (const [i, b] of data.batches.slice(0, 3).entries()) {
    const caption = (f: string) => path.basename(f);
    const labels = path.join(dir, `val_batch${i}_labels.jpg`);
    const tiles = (rows: ArrayLike<number>[][]): MosaicTile[] =>
      b.files.map((f, k) => ({ image: f, boxes: rows[k]!, caption: caption(f) }));
    await writeMosaic(labels, tiles(b.labels), { names: data.names });
    const preds = path.join(dir, `val_batch${i}_pred.jpg`);
    await writeMosaic(preds, tiles(b.detections.map(predRows)), { names: data.names });
    files.push(labels, preds);
  }
  return files;
}

/** The part of the native trainer the report uses: augmented samples as training sees them. */
export interface SampleSource {
  sample(
    index: number,
    epoch: number,
    mosaic: boolean,
  ): Promise<{ width: number; height: number; data: Uint8Array; labels: Float32Array }>;
}

export interface TrainReportOptions {
  saveDir: string;
  names: readonly string[];
  /** false: TensorBoard only (--noplots). */
  plots: boolean;
  /** A resumed run keeps the plots it has; TensorBoard continues in a new file beside the old. */
  resumed: boolean;
  log: (line: string) => void;
}

/** The run folder's reports during training: plots before and after, scalars per epoch. */
export class TrainReport {
  readonly #events: EventWriter;
  #seconds = 0;

  private constructor(readonly opts: TrainReportOptions) {
    this.#events = new EventWriter(opts.saveDir);
  }

  /** Opens the TensorBoard file; plots labels.jpg, the correlogram and train_batch0..2.jpg. */
  static async start(
    opts: TrainReportOptions,
    items: readonly { labels: ArrayLike<number>[] }[],
    trainer: SampleSource,
    batch: number,
  ): Promise<TrainReport> {
    const report = new TrainReport(opts);
    if (!opts.plots || opts.resumed) return report;
    await report.#timed(async () => {
      const labels = items.flatMap((it) => it.labels);
      await plotLabels(path.join(opts.saveDir, 'labels.jpg'), labels, opts.names);
      await plotCorrelogram(path.join(opts.saveDir, 'labels_correlogram.jpg'), labels);
      // The first images of epoch 0 as the loader augments them (same seed and mosaics).
      for (let b = 0; b < 3 && b * batch < items.length; b++) {
        const tiles: MosaicTile[] = [];
        for (let i = b * batch; i < Math.min(items.length, (b + 1) * batch, b * batch + 16); i++) {
          const s = await trainer.sample(i, 0, true);
          const rows = Array.from({ length: s.labels.length / 5 }, (_, k) =>
            s.labels.subarray(k * 5, k * 5 + 5),
          );
          tiles.push({ image: s, boxes: rows });
        }
        await writeMosaic(path.join(opts.saveDir, `train_batch${b}.jpg`), tiles, {
          names: opts.names,
        });
      }
    });
    return report;
  }

  async #timed(work: () => Promise<void>): Promise<void> {
    const t0 = performance.now();
    await work();
    this.#seconds += (performance.now() - t0) / 1000;
  }

  /** One epoch's results.csv values (after `epoch`) as TensorBoard scalars. */
  epoch(epoch: number, values: readonly number[]): void {
    this.#events.scalars(epoch, Object.fromEntries(SCALAR_TAGS.map((t, i) => [t, values[i]!])));
  }

  /** Where the final validation writes its plots (none with --noplots). */
  valPlots(): { plots: string } | Record<string, never> {
    return this.opts.plots ? { plots: this.opts.saveDir } : {};
  }

  /** Closes the event file without plotting (a run that ends in an error). */
  close(): void {
    this.#events.close();
  }

  /** results.png from results.csv (also as a TensorBoard image); closes the event file. */
  async finish(csv: string): Promise<void> {
    try {
      if (this.opts.plots && fs.existsSync(csv)) {
        const out = path.join(this.opts.saveDir, 'results.png');
        await this.#timed(() => plotResults(csv, out));
        this.opts.log(
          `Plots: ${this.#seconds.toFixed(1)}s for labels, train batches and results.png`,
        );
      }
    } finally {
      this.#events.close();
    }
  }
}

/**
 * The run folder's plots, by the reference's file names: results.png (from results.csv), the
 * P/R/F1/PR curves, confusion_matrix.png, labels.jpg, labels_correlogram.jpg and evolve.png.
 * Inputs are plain data (the metrics' curves, label rows), so any caller can draw them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Axes, type Box } from './chart';
import { classColor, font, newCanvas, saveCanvas, type Context } from './canvas';

/** The panels of results.png, by results.csv column, in the reference's order (2 rows × 5). */
const RESULT_PANELS = [
  'train/box_loss',
  'train/obj_loss',
  'train/cls_loss',
  'metrics/precision',
  'metrics/recall',
  'val/box_loss',
  'val/obj_loss',
  'val/cls_loss',
  'metrics/mAP_0.5',
  'metrics/mAP_0.5:0.95',
];

/** Gaussian smoothing (σ in samples, edges reflected): the dotted trend line of results.png. */
export function gaussianSmooth(y: ArrayLike<number>, sigma = 3): Float64Array {
  const n = y.length;
  const out = new Float64Array(n);
  const r = Math.ceil(4 * sigma);
  const w = Array.from({ length: 2 * r + 1 }, (_, k) =>
    Math.exp(-((k - r) ** 2) / (2 * sigma ** 2)),
  );
  const total = w.reduce((a, b) => a + b, 0);
  const at = (i: number): number => {
    let j = i;
    while (j < 0 || j >= n) j = j < 0 ? -j - 1 : 2 * n - j - 1;
    return y[j]!;
  };
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = -r; k <= r; k++) s += w[k + r]! * at(i + k);
    out[i] = s / total;
  }
  return out;
}

/** A box filter over `fraction` of the points (the reference's smoothing of mean curves). */
export function boxSmooth(y: ArrayLike<number>, fraction = 0.05): Float64Array {
  const nf = Math.round(y.length * fraction * 2) / 2 + 1;
  const half = Math.floor(nf / 2);
  const out = new Float64Array(y.length);
  for (let i = 0; i < y.length; i++) {
    let s = 0;
    for (let k = i - half; k <= i + half; k++) s += y[Math.min(Math.max(k, 0), y.length - 1)]!;
    out[i] = s / (2 * half + 1);
  }
  return out;
}

/** results.csv as columns by header name. */
export function readResultsCsv(file: string): Record<string, number[]> {
  const [head, ...rows] = fs.readFileSync(file, 'utf8').trim().split('\n');
  const names = head!.split(',').map((s) => s.trim());
  const cols: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (const row of rows) row.split(',').forEach((v, i) => cols[names[i]!]?.push(Number(v)));
  return cols;
}

/** results.png: ten panels of results.csv, each the values per epoch and a smoothed line. */
export async function plotResults(csvFile: string, out: string): Promise<void> {
  const cols = readResultsCsv(csvFile);
  const epochs = cols['epoch'] ?? [];
  const canvas = newCanvas(2400, 1200);
  const ctx = canvas.getContext('2d');
  RESULT_PANELS.forEach((name, k) => {
    const ys = cols[name] ?? [];
    const box: Box = { x: (k % 5) * 480, y: Math.floor(k / 5) * 600, w: 480, h: 600 };
    const ax = new Axes(ctx, box, {
      title: name,
      xlabel: 'epoch',
      fontPx: 16,
      legend: 'upper right',
    });
    ax.line(epochs, ys, { color: '#1f77b4', width: 2, markers: true, label: 'results' });
    if (ys.length > 1)
      ax.line(epochs, gaussianSmooth(ys, 3), {
        color: '#ff7f0e',
        width: 2,
        dash: [3, 4],
        label: 'smooth',
      });
    ax.draw();
  });
  await saveCanvas(canvas, out);
}

/** The metrics' curves (lib/val/metrics.ts MetricCurves) and per-class AP50. */
export interface CurveData {
  px: ArrayLike<number>;
  precision: ArrayLike<number>;
  recall: ArrayLike<number>;
  f1: ArrayLike<number>;
  classPrecision: ArrayLike<number>;
  classRecall: ArrayLike<number>;
  classF1: ArrayLike<number>;
  prPrecision: (ArrayLike<number> | null)[];
  bestIndex: number;
}

const MEAN = { color: '#1f4fff', width: 4 };

function classRows(flat: ArrayLike<number>, n: number): Float64Array[] {
  const len = flat.length / Math.max(n, 1);
  return Array.from({ length: n }, (_, i) =>
    Float64Array.from({ length: len }, (_, j) => flat[i * len + j]!),
  );
}

/** One curve figure: every class (names in the legend under 21 classes) and the mean. */
async function curveFigure(
  out: string,
  xs: ArrayLike<number>,
  rows: (ArrayLike<number> | null)[],
  labels: string[],
  mean: ArrayLike<number>,
  meanLabel: string,
  axes: { title: string; xlabel: string; ylabel: string },
  best?: [number, number],
): Promise<void> {
  const canvas = newCanvas(1500, 1000);
  const ctx = canvas.getContext('2d');
  const few = rows.length < 21;
  const ax = new Axes(
    ctx,
    { x: 0, y: 0, w: 1500, h: 1000 },
    {
      ...axes,
      xlim: [0, 1],
      ylim: [0, 1.02],
      fontPx: 18,
      legend: 'outside',
    },
  );
  rows.forEach((r, i) => {
    if (r)
      ax.line(xs, r, {
        color: few ? classColor(i) : '#999999',
        width: 1.5,
        ...(few ? { label: labels[i]! } : {}),
      });
  });
  ax.line(xs, mean, { ...MEAN, label: meanLabel });
  if (best) ax.mark(best[0], best[1], '#d62728');
  ax.draw();
  await saveCanvas(canvas, out);
}

function argmax(y: ArrayLike<number>): number {
  let k = 0;
  for (let i = 1; i < y.length; i++) if (y[i]! > y[k]!) k = i;
  return k;
}

/** PR_curve.png, F1_curve.png, P_curve.png and R_curve.png into `dir`. */
export async function plotCurves(
  dir: string,
  curves: CurveData,
  classes: readonly { name: string; ap50: number }[],
): Promise<string[]> {
  const n = classes.length;
  const px = curves.px;
  const files: string[] = [];
  const pr = curves.prPrecision;
  const withPr = pr.filter((r): r is ArrayLike<number> => r !== null);
  const prMean = Float64Array.from(
    px,
    (_, j) => withPr.reduce((s, r) => s + r[j]!, 0) / Math.max(withPr.length, 1),
  );
  const map50 = classes.reduce((s, c) => s + c.ap50, 0) / Math.max(n, 1);
  const f = path.join(dir, 'PR_curve.png');
  await curveFigure(
    f,
    px,
    pr,
    classes.map((c) => `${c.name} ${c.ap50.toFixed(3)}`),
    prMean,
    `all classes ${map50.toFixed(3)} mAP@0.5`,
    {
      title: 'Precision-Recall Curve',
      xlabel: 'Recall',
      ylabel: 'Precision',
    },
  );
  files.push(f);
  const best = curves.bestIndex;
  for (const [file, flat, mean, ylabel] of [
    ['F1_curve.png', curves.classF1, curves.f1, 'F1'],
    ['P_curve.png', curves.classPrecision, curves.precision, 'Precision'],
    ['R_curve.png', curves.classRecall, curves.recall, 'Recall'],
  ] as const) {
    const smooth = boxSmooth(mean, 0.05);
    const top = argmax(smooth);
    const label = `all classes ${smooth[top]!.toFixed(2)} at ${Number(px[top]).toFixed(3)} (× conf ${Number(px[best]).toFixed(3)}: P, R read here)`;
    const out = path.join(dir, file);
    await curveFigure(
      out,
      px,
      classRows(flat, n),
      classes.map((c) => c.name),
      smooth,
      label,
      {
        title: `${ylabel}-Confidence Curve`,
        xlabel: 'Confidence',
        ylabel,
      },
      [Number(px[best]), smooth[best]!],
    );
    files.push(out);
  }
  return files;
}

/** White → dark blue, like matplotlib's Blues. */
function blues(v: number): string {
  const t = Math.min(Math.max(v, 0), 1);
  const lerp = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${lerp(247, 8)}, ${lerp(251, 48)}, ${lerp(255, 107)})`;
}

/**
 * confusion_matrix.png: (nc + 1)² counts [predicted][true] normalised per true class (column),
 * the last row and column background; values under 0.005 left blank, as the reference does.
 */
export async function plotConfusionMatrix(
  out: string,
  counts: readonly (readonly number[])[],
  names: readonly string[],
): Promise<void> {
  const n = counts.length;
  const colSum = Array.from({ length: n }, (_, j) => counts.reduce((s, r) => s + r[j]!, 0));
  const labels = [...names.slice(0, n - 1), 'background'];
  const f = n < 30 ? 16 : 10;
  const cell = Math.max(16, Math.min(120, Math.floor(1500 / n)));
  const left = f * 12;
  const top = f * 4;
  const W = left + n * cell + f * 8;
  const H = top + n * cell + f * 10;
  const canvas = newCanvas(W, H);
  const ctx = canvas.getContext('2d');
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const v = counts[i]![j]! / (colSum[j]! + 1e-9);
      const x = left + j * cell;
      const y = top + i * cell;
      ctx.fillStyle = v < 0.005 ? '#ffffff' : blues(v);
      ctx.fillRect(x, y, cell, cell);
      if (n < 30 && v >= 0.005) {
        ctx.fillStyle = v > 0.5 ? '#ffffff' : '#000000';
        ctx.font = font(Math.min(f, cell * 0.32));
        ctx.fillText(v.toFixed(2), x + cell / 2, y + cell / 2);
      }
    }
  ctx.strokeStyle = '#000000';
  ctx.strokeRect(left + 0.5, top + 0.5, n * cell, n * cell);
  drawMatrixLabels(ctx, labels, { left, top, cell, f, n });
  colorbar(ctx, { x: left + n * cell + f * 2, y: top, w: f * 1.5, h: n * cell }, f);
  await saveCanvas(canvas, out);
}

function drawMatrixLabels(
  ctx: Context,
  labels: string[],
  g: { left: number; top: number; cell: number; f: number; n: number },
): void {
  const { left, top, cell, f, n } = g;
  ctx.fillStyle = '#000000';
  ctx.font = font(Math.min(f, cell * 0.4));
  ctx.textAlign = 'right';
  labels.forEach((name, i) => ctx.fillText(name, left - f * 0.5, top + (i + 0.5) * cell));
  labels.forEach((name, j) => {
    ctx.save();
    ctx.translate(left + (j + 0.5) * cell, top + n * cell + f * 0.5);
    ctx.rotate(-Math.PI / 4);
    ctx.fillText(name, 0, 0);
    ctx.restore();
  });
  ctx.font = font(f * 1.2);
  ctx.textAlign = 'center';
  ctx.fillText('Confusion Matrix (normalised per true class)', left + (n * cell) / 2, top / 2);
  ctx.fillText('True', left + (n * cell) / 2, top + n * cell + f * 8.5);
  ctx.save();
  ctx.translate(f * 1.2, top + (n * cell) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('Predicted', 0, 0);
  ctx.restore();
}

function colorbar(ctx: Context, b: Box, f: number): void {
  for (let k = 0; k < b.h; k++) {
    ctx.fillStyle = blues(1 - k / b.h);
    ctx.fillRect(b.x, b.y + k, b.w, 1);
  }
  ctx.strokeStyle = '#000000';
  ctx.strokeRect(b.x + 0.5, b.y + 0.5, b.w, b.h);
  ctx.fillStyle = '#000000';
  ctx.font = font(f * 0.9);
  ctx.textAlign = 'left';
  for (const v of [0, 0.2, 0.4, 0.6, 0.8, 1])
    ctx.fillText(v.toFixed(1), b.x + b.w + f * 0.4, b.y + b.h * (1 - v));
}

/** A 2-D histogram as a heat map in `area` (counts scaled by the largest bin). */
function hist2d(
  ctx: Context,
  area: Box,
  xs: ArrayLike<number>,
  ys: ArrayLike<number>,
  bins = 50,
  color: [number, number, number] = [31, 119, 180],
): void {
  const h = new Float64Array(bins * bins);
  for (let i = 0; i < xs.length; i++) {
    const bx = Math.min(bins - 1, Math.max(0, Math.floor(xs[i]! * bins)));
    const by = Math.min(bins - 1, Math.max(0, Math.floor(ys[i]! * bins)));
    h[by * bins + bx]!++;
  }
  const max = Math.max(1, ...h);
  for (let by = 0; by < bins; by++)
    for (let bx = 0; bx < bins; bx++) {
      const v = h[by * bins + bx]!;
      if (v === 0) continue;
      const t = 0.15 + 0.85 * Math.sqrt(v / max);
      ctx.fillStyle = `rgba(${color.join(',')},${t.toFixed(3)})`;
      ctx.fillRect(
        area.x + (bx / bins) * area.w,
        area.y + area.h - ((by + 1) / bins) * area.h,
        area.w / bins + 0.5,
        area.h / bins + 0.5,
      );
    }
}

/** Rows (class, cx, cy, w, h), normalised. */
export type LabelRows = ArrayLike<number>[];

/** labels.jpg: instances per class, the boxes drawn centred, centres (x, y) and sizes (w, h). */
export async function plotLabels(
  out: string,
  labels: LabelRows,
  names: readonly string[],
): Promise<void> {
  const nc = names.length;
  const counts = new Array<number>(nc).fill(0);
  for (const l of labels) counts[l[0]!] = (counts[l[0]!] ?? 0) + 1;
  const canvas = newCanvas(1600, 1600);
  const ctx = canvas.getContext('2d');
  const f = 18;
  const bars = new Axes(
    ctx,
    { x: 0, y: 0, w: 800, h: 800 },
    {
      ylabel: 'instances',
      xlim: [-0.5, nc - 0.5],
      ylim: [0, Math.max(...counts, 1) * 1.1],
      fontPx: f,
    },
  );
  bars.draw();
  const a = bars.area;
  const bw = a.w / nc;
  counts.forEach((c, i) => {
    ctx.fillStyle = classColor(i);
    const hgt = (c / (Math.max(...counts, 1) * 1.1)) * a.h;
    ctx.fillRect(a.x + i * bw + bw * 0.1, a.y + a.h - hgt, bw * 0.8, hgt);
  });
  // Up to 1000 boxes, centred, at their relative size.
  const boxes = new Axes(
    ctx,
    { x: 800, y: 0, w: 800, h: 800 },
    { title: 'boxes (centred)', xlim: [0, 1], ylim: [0, 1], fontPx: f },
  );
  boxes.draw();
  const b = boxes.area;
  ctx.lineWidth = 1;
  for (const l of labels.slice(0, 1000)) {
    ctx.strokeStyle = classColor(l[0]!);
    ctx.strokeRect(
      b.x + b.w * (0.5 - l[3]! / 2),
      b.y + b.h * (0.5 - l[4]! / 2),
      b.w * l[3]!,
      b.h * l[4]!,
    );
  }
  const pairs: [string, string, number, number][] = [
    ['x', 'y', 1, 2],
    ['width', 'height', 3, 4],
  ];
  pairs.forEach(([xl, yl, i, j], k) => {
    const ax = new Axes(
      ctx,
      { x: k * 800, y: 800, w: 800, h: 800 },
      { xlabel: xl, ylabel: yl, xlim: [0, 1], ylim: [0, 1], fontPx: f },
    );
    ax.draw();
    hist2d(
      ctx,
      ax.area,
      labels.map((l) => l[i]!),
      labels.map((l) => l[j]!),
    );
  });
  await saveCanvas(canvas, out);
}

/** labels_correlogram.jpg: histograms of x, y, width, height and their pairwise 2-D histograms. */
export async function plotCorrelogram(out: string, labels: LabelRows): Promise<void> {
  const keys = ['x', 'y', 'width', 'height'];
  const cols = keys.map((_, k) => labels.map((l) => l[k + 1]!));
  const S = 400;
  const canvas = newCanvas(S * 4, S * 4);
  const ctx = canvas.getContext('2d');
  for (let r = 0; r < 4; r++)
    for (let c = 0; c < 4; c++) {
      const box = { x: c * S, y: r * S, w: S, h: S };
      const ax = new Axes(ctx, box, {
        xlim: [0, 1],
        ylim: [0, 1],
        fontPx: 13,
        ...(r === 3 ? { xlabel: keys[c]! } : {}),
        ...(c === 0 ? { ylabel: keys[r]! } : {}),
      });
      ax.draw();
      if (r === c) histogram(ctx, ax.area, cols[c]!);
      else hist2d(ctx, ax.area, cols[c]!, cols[r]!, 40);
    }
  await saveCanvas(canvas, out);
}

function histogram(ctx: Context, a: Box, xs: number[], bins = 30): void {
  const h = new Array<number>(bins).fill(0);
  for (const x of xs) h[Math.min(bins - 1, Math.max(0, Math.floor(x * bins)))]!++;
  const max = Math.max(1, ...h);
  ctx.fillStyle = 'rgba(31,119,180,0.8)';
  h.forEach((v, i) =>
    ctx.fillRect(
      a.x + (i / bins) * a.w,
      a.y + a.h * (1 - v / max),
      a.w / bins - 1,
      (a.h * v) / max,
    ),
  );
}

/**
 * evolve.png from evolve.csv: each hyperparameter's value against fitness per generation, the best
 * generation marked, its value in the title.
 */
export async function plotEvolve(csvFile: string, out: string, firstHypColumn = 7): Promise<void> {
  const cols = readResultsCsv(csvFile);
  const names = Object.keys(cols);
  const fit = cols[names[2]!]!.map((m50, i) => 0.1 * m50 + 0.9 * cols[names[3]!]![i]!);
  const keys = names.slice(firstHypColumn);
  const best = argmax(fit);
  const per = Math.ceil(Math.sqrt(keys.length));
  const S = 360;
  const canvas = newCanvas(S * per, S * Math.ceil(keys.length / per));
  const ctx = canvas.getContext('2d');
  const lo = Math.min(...fit);
  const hi = Math.max(...fit);
  const shade = fit.map(
    (v) => `hsl(${(240 - ((v - lo) / (hi - lo || 1)) * 240).toFixed(0)}, 80%, 45%)`,
  );
  keys.forEach((key, k) => {
    const xs = cols[key]!;
    const ax = new Axes(
      ctx,
      { x: (k % per) * S, y: Math.floor(k / per) * S, w: S, h: S },
      { title: `${key} = ${xs[best]!.toPrecision(3)}`, fontPx: 12 },
    );
    ax.scatter(xs, fit, { color: '#1f77b4' }, 3, shade);
    ax.mark(xs[best]!, fit[best]!, '#000000');
    ax.draw();
  });
  await saveCanvas(canvas, out);
}

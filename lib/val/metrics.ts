/// <reference types="node" preserve="true" />
/**
 * YOLOv5 v7.0 validation metrics in plain TypeScript: per-image matching of detections to labels
 * at 10 IoU thresholds, AP per class (101-point interpolated), P/R at the best smoothed mean F1,
 * mAP, fitness, and the confusion matrix.
 *
 * Rows are given per image, after NMS, in original-image pixels:
 * - detections: `x1, y1, x2, y2, conf, cls` (N × 6)
 * - labels: `cls, x1, y1, x2, y2` (M × 5)
 * either as one flat array (row-major) or as an array of rows.
 *
 * Numerics follow the reference where it decides an outcome: boxes, confidences and thresholds are
 * float32 like its tensors, matching IoU is computed in float32 arithmetic with its eps, and sums
 * that feed means use numpy's pairwise summation.
 */
import { show, Yolo5Error } from '../errors';

/** Detection or label rows: one flat row-major array, or an array of rows. */
export type BoxRows = ArrayLike<number> | readonly ArrayLike<number>[];

const f32 = Math.fround;

/** eps of the reference's `box_iou` (added to the union in float32). */
const IOU_EPS_F32 = f32(1e-7);

/** eps of the reference's `ap_per_class` (recall and F1 denominators). */
const AP_EPS = 1e-16;

/** Number of confidence points of the P, R and F1 curves. */
const CURVE_POINTS = 1000;

/** numpy's `linspace(start, stop, num)`: `start + i * step`, the last value exactly `stop`. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/**
 * IoU thresholds 0.50, 0.55, …, 0.95: `linspace(0.5, 0.95, 10)` rounded to float32, because the
 * reference compares float32 IoUs against a float32 tensor (torch's CPU linspace gives the same
 * ten values).
 */
export const IOU_THRESHOLDS: Float32Array = Float32Array.from(linspace(0.5, 0.95, 10));

/** Python's `round()` and numpy's `round()`: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  if (Math.abs(x % 1) === 0.5) return 2 * Math.round(x / 2);
  return Math.round(x);
}

/**
 * numpy's `add.reduce` for a strided 1-D run of float64: pairwise summation with 8 accumulators,
 * so means agree with the reference to the last bit.
 */
export function pairwiseSum(a: ArrayLike<number>, offset = 0, n = a.length, stride = 1): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[offset + i * stride]!;
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[offset + j * stride]!;
    let i = 8;
    for (; i < n - (n % 8); i += 8)
      for (let j = 0; j < 8; j++) r[j]! += a[offset + (i + j) * stride]!;
    let res = r[0]! + r[1]! + (r[2]! + r[3]!) + (r[4]! + r[5]! + (r[6]! + r[7]!));
    for (; i < n; i++) res += a[offset + i * stride]!;
    return res;
  }
  // Split in two halves whose first is a multiple of the unroll factor, like numpy.
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, offset, n2, stride) + pairwiseSum(a, offset + n2 * stride, n - n2, stride);
}

/** numpy's `mean` of a strided 1-D run. */
function mean(a: ArrayLike<number>, offset = 0, n = a.length, stride = 1): number {
  return pairwiseSum(a, offset, n, stride) / n;
}

/**
 * numpy's `interp(x, xp, fp, left, right)`: xp must be non-decreasing; with repeated xp the value at
 * the last of them wins, as numpy's search does; left/right default to the first/last fp.
 */
export function interp(
  x: ArrayLike<number>,
  xp: ArrayLike<number>,
  fp: ArrayLike<number>,
  left?: number,
  right?: number,
): Float64Array {
  const n = xp.length;
  if (n === 0 || fp.length !== n)
    throw new Yolo5Error(
      'E_ARG',
      `Expected xp and fp of the same non-zero length but received ${n} and ${fp.length}`,
    );
  const lval = left ?? fp[0]!;
  const rval = right ?? fp[n - 1]!;
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const xv = x[i]!;
    if (Number.isNaN(xv)) {
      out[i] = xv;
      continue;
    }
    if (xv > xp[n - 1]!) {
      out[i] = rval;
      continue;
    }
    if (xv < xp[0]!) {
      out[i] = lval;
      continue;
    }
    // The last j with xp[j] <= xv: the index numpy's binary search settles on.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (xv >= xp[mid]!) lo = mid + 1;
      else hi = mid;
    }
    const j = lo - 1;
    if (j === n - 1 || xp[j] === xv) {
      out[i] = fp[j]!;
      continue;
    }
    const slope = (fp[j + 1]! - fp[j]!) / (xp[j + 1]! - xp[j]!);
    let v = slope * (xv - xp[j]!) + fp[j]!;
    // numpy retries from the right end when the left one gives NaN (infinite slope).
    if (Number.isNaN(v)) {
      v = slope * (xv - xp[j + 1]!) + fp[j + 1]!;
      if (Number.isNaN(v) && fp[j] === fp[j + 1]) v = fp[j]!;
    }
    out[i] = v;
  }
  return out;
}

/** numpy's `trapz(y, x)`: the per-interval areas summed pairwise. */
export function trapz(y: ArrayLike<number>, x: ArrayLike<number>): number {
  const n = Math.max(y.length - 1, 0);
  const terms = new Float64Array(n);
  for (let i = 0; i < n; i++) terms[i] = ((x[i + 1]! - x[i]!) * (y[i + 1]! + y[i]!)) / 2.0;
  return pairwiseSum(terms);
}

/** Recall points of the COCO-style 101-point interpolation. */
const AP_RECALL_POINTS = linspace(0, 1, 101);

export interface ApCurve {
  ap: number;
  /** The precision envelope over `mrec`, with the sentinels. */
  mpre: Float64Array;
  /** [0, …recall, 1]. */
  mrec: Float64Array;
}

/**
 * AP of one recall/precision curve: sentinels [0, …, 1] / [1, …, 0], the envelope (running max of
 * precision from the right), sampled at 101 recall points and integrated by trapezoids.
 */
export function computeAp(recall: ArrayLike<number>, precision: ArrayLike<number>): ApCurve {
  const n = recall.length;
  const mrec = new Float64Array(n + 2);
  const mpre = new Float64Array(n + 2);
  mrec[0] = 0;
  mpre[0] = 1;
  for (let i = 0; i < n; i++) {
    mrec[i + 1] = recall[i]!;
    mpre[i + 1] = precision[i]!;
  }
  mrec[n + 1] = 1;
  mpre[n + 1] = 0;
  for (let i = n; i >= 0; i--) if (mpre[i + 1]! > mpre[i]!) mpre[i] = mpre[i + 1]!;
  const ap = trapz(interp(AP_RECALL_POINTS, mrec, mpre), AP_RECALL_POINTS);
  return { ap, mpre, mrec };
}

/**
 * The reference's box filter of fraction f: `nf = round(len * f * 2) // 2 + 1` taps (odd for
 * the widths used; Python's half-to-even round can make it even), the ends
 * padded with `nf // 2` copies of the first/last value, 'valid' convolution with ones(nf) / nf.
 * Sums run left to right (numpy uses BLAS dot here, which may round the last bit differently).
 */
export function smooth(y: ArrayLike<number>, f = 0.05): Float64Array {
  const n = y.length;
  const nf = Math.floor(roundHalfEven(n * f * 2) / 2) + 1;
  const half = Math.floor(nf / 2);
  const w = 1 / nf;
  const out = new Float64Array(n + 2 * half - nf + 1);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let k = 0; k < nf; k++) {
      const j = i + k - half;
      s += (j < 0 ? y[0]! : j >= n ? y[n - 1]! : y[j]!) * w;
    }
    out[i] = s;
  }
  return out;
}

/** Index of the first maximum, like numpy's argmax (a NaN counts as the maximum). */
function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]!)) return i;
    if (a[i]! > a[best]!) best = i;
  }
  return best;
}

/** Validates rows of `width` numbers and returns them flat as float32 (the reference's dtype). */
function toRows(rows: BoxRows, width: number, what: string): Float32Array {
  const n = rows.length;
  if (n > 0 && typeof rows[0] === 'object') {
    const list = rows as readonly ArrayLike<number>[];
    const out = new Float32Array(n * width);
    for (let i = 0; i < n; i++) {
      const row = list[i]!;
      if (row === null || typeof row !== 'object' || row.length !== width)
        throw new Yolo5Error(
          'E_ARG',
          `Expected ${what} rows of ${width} numbers but received row ${i}: ${show(
            row === null || typeof row !== 'object' ? row : Array.from(row),
          )}`,
          { value: row },
        );
      for (let k = 0; k < width; k++) out[i * width + k] = row[k]!;
    }
    return checkRows(out, width, what);
  }
  if (n % width !== 0)
    throw new Yolo5Error(
      'E_ARG',
      `Expected ${what} as rows of ${width} numbers (a length divisible by ${width}) but received length ${n}`,
      { value: n },
    );
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = (rows as ArrayLike<number>)[i];
    if (typeof v !== 'number')
      throw new Yolo5Error('E_ARG', `Expected numbers in ${what} but received ${show(v)}`, {
        value: v,
      });
    out[i] = v;
  }
  return checkRows(out, width, what);
}

function checkRows(out: Float32Array, width: number, what: string): Float32Array {
  const clsAt = width === 6 ? 5 : 0;
  for (let i = 0; i < out.length; i++) {
    const v = out[i]!;
    if (!Number.isFinite(v))
      throw new Yolo5Error(
        'E_ARG',
        `Expected finite numbers in ${what} but received ${show(v)} in row ${Math.floor(i / width)}`,
        { value: v },
      );
    if (i % width === clsAt && !(Number.isInteger(v) && v >= 0))
      throw new Yolo5Error(
        'E_ARG',
        `Expected a non-negative integer class in ${what} but received ${show(v)} in row ${Math.floor(i / width)}`,
        { value: v },
      );
  }
  return out;
}

/** Checks that classes fit a model of `nc` classes. */
function checkClasses(
  rows: Float32Array,
  width: number,
  at: number,
  nc: number,
  what: string,
): void {
  for (let i = at; i < rows.length; i += width)
    if (rows[i]! >= nc)
      throw new Yolo5Error(
        'E_ARG',
        `Expected ${what} classes below nc=${nc} but received ${rows[i]}`,
        { value: rows[i] },
      );
}

/** Standard IoU of two xyxy boxes (no eps); 0 where the union is empty. */
export function boxIou(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const iw = Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!);
  const ih = Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!);
  const inter = Math.max(iw, 0) * Math.max(ih, 0);
  const union = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter;
  return union > 0 ? inter / union : 0;
}

/** IoU of every box of `a` (rows) with every box of `b` (columns): xyxy rows, standard IoU. */
export function boxIouMatrix(a: BoxRows, b: BoxRows): Float64Array {
  const ra = toXyxy(a, 'boxes');
  const rb = toXyxy(b, 'boxes');
  const na = ra.length / 4;
  const nb = rb.length / 4;
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++)
    for (let j = 0; j < nb; j++)
      out[i * nb + j] = boxIou(ra.subarray(i * 4, i * 4 + 4), rb.subarray(j * 4, j * 4 + 4));
  return out;
}

/** xyxy rows as float64 (no class column, so not checked like detections). */
function toXyxy(rows: BoxRows, what: string): Float64Array {
  const n = rows.length;
  if (n > 0 && typeof rows[0] === 'object') {
    const list = rows as readonly ArrayLike<number>[];
    const out = new Float64Array(n * 4);
    list.forEach((row, i) => {
      if (row.length !== 4)
        throw new Yolo5Error(
          'E_ARG',
          `Expected ${what} rows of 4 numbers (x1, y1, x2, y2) but received ${show(Array.from(row))}`,
          { value: row },
        );
      for (let k = 0; k < 4; k++) out[i * 4 + k] = row[k]!;
    });
    return out;
  }
  if (n % 4 !== 0)
    throw new Yolo5Error(
      'E_ARG',
      `Expected ${what} as rows of 4 numbers but received length ${n}`,
      { value: n },
    );
  return Float64Array.from(rows as ArrayLike<number>);
}

/**
 * The reference's matching IoU (`box_iou` on float32 tensors): every operation rounded to float32
 * and eps 1e-7 added to the union, so threshold ties fall the same way. `a` rows are compared with
 * `b` rows; `aAt`/`bAt` give where x1 sits in rows of width `aWidth`/`bWidth`.
 */
function iouMatrixF32(
  a: Float32Array,
  aWidth: number,
  aAt: number,
  b: Float32Array,
  bWidth: number,
  bAt: number,
): Float32Array {
  const na = a.length / aWidth;
  const nb = b.length / bWidth;
  const out = new Float32Array(na * nb);
  const areaB = new Float32Array(nb);
  for (let j = 0; j < nb; j++) {
    const o = j * bWidth + bAt;
    areaB[j] = f32(f32(b[o + 2]! - b[o]!) * f32(b[o + 3]! - b[o + 1]!));
  }
  for (let i = 0; i < na; i++) {
    const p = i * aWidth + aAt;
    const ax1 = a[p]!;
    const ay1 = a[p + 1]!;
    const ax2 = a[p + 2]!;
    const ay2 = a[p + 3]!;
    const areaA = f32(f32(ax2 - ax1) * f32(ay2 - ay1));
    for (let j = 0; j < nb; j++) {
      const o = j * bWidth + bAt;
      const iw = f32(Math.min(ax2, b[o + 2]!) - Math.max(ax1, b[o]!));
      const ih = f32(Math.min(ay2, b[o + 3]!) - Math.max(ay1, b[o + 1]!));
      const inter = f32((iw > 0 ? iw : 0) * (ih > 0 ? ih : 0));
      const union = f32(f32(f32(areaA + areaB[j]!) - inter) + IOU_EPS_F32);
      out[i * nb + j] = f32(inter / union);
    }
  }
  return out;
}

/**
 * What matching uses: the IoU of label boxes (rows) with detection boxes (columns), computed like
 * the reference's `box_iou` on float32 tensors (eps 1e-7 in the union). xyxy rows.
 */
export function boxIouMatrixF32(a: BoxRows, b: BoxRows): Float32Array {
  return iouMatrixF32(
    Float32Array.from(toXyxy(a, 'boxes')),
    4,
    0,
    Float32Array.from(toXyxy(b, 'boxes')),
    4,
    0,
  );
}

/**
 * Sorts pair indices (row-major `label * nDet + det`) by IoU descending. Equal IoUs: the later pair
 * first, which is what the reference's ascending argsort reversed gives where the sort is stable
 * (numpy's introsort on up to 16 pairs; larger tied sets are implementation-defined there).
 */
function sortPairsByIouDesc(pairs: Int32Array, iou: Float32Array): Int32Array {
  return pairs.sort((p, q) => iou[q]! - iou[p]! || q - p);
}

/**
 * Which detections of one image are true positives at each IoU threshold: `correct` is N × T,
 * row-major (T = `iouv.length`), 1 where detection i is correct at threshold t.
 *
 * Per threshold, as the reference's `process_batch`: the (label, detection) pairs with the same
 * class and IoU ≥ t are sorted by IoU descending; each detection keeps its first (highest IoU)
 * pair; the survivors, now in detection order, keep one per label: the first, i.e. the lowest
 * detection index (the highest confidence after NMS), not the highest IoU.
 */
export function matchImage(
  detections: BoxRows,
  labels: BoxRows,
  iouv: ArrayLike<number> = IOU_THRESHOLDS,
): Uint8Array {
  return matchRows(toRows(detections, 6, 'detections'), toRows(labels, 5, 'labels'), iouv);
}

function matchRows(det: Float32Array, lab: Float32Array, iouv: ArrayLike<number>): Uint8Array {
  const nDet = det.length / 6;
  const nLab = lab.length / 5;
  const nT = iouv.length;
  const correct = new Uint8Array(nDet * nT);
  if (nDet === 0 || nLab === 0 || nT === 0) return correct;
  const thresholds = Float32Array.from(iouv);
  const iou = iouMatrixF32(lab, 5, 1, det, 6, 0);
  let tMin = Infinity;
  for (const t of thresholds) tMin = Math.min(tMin, t);
  // Candidates once at the lowest threshold; each threshold then takes a prefix of the sorted list.
  let count = 0;
  const candidates = new Int32Array(nLab * nDet);
  for (let l = 0; l < nLab; l++)
    for (let d = 0; d < nDet; d++) {
      const k = l * nDet + d;
      if (iou[k]! >= tMin && lab[l * 5] === det[d * 6 + 5]) candidates[count++] = k;
    }
  if (count === 0) return correct;
  const sorted = sortPairsByIouDesc(candidates.subarray(0, count), iou);
  const detTaken = new Int32Array(nDet).fill(-1);
  const labelDet = new Int32Array(nLab);
  for (let ti = 0; ti < nT; ti++) {
    const t = thresholds[ti]!;
    labelDet.fill(-1);
    for (const k of sorted) {
      if (iou[k]! < t) break;
      const d = k % nDet;
      if (detTaken[d] === ti) continue;
      detTaken[d] = ti;
      const l = (k - d) / nDet;
      const prev = labelDet[l]!;
      if (prev < 0 || d < prev) labelDet[l] = d;
    }
    for (const d of labelDet) if (d >= 0) correct[d * nT + ti] = 1;
  }
  return correct;
}

/** The reference's `ap_per_class` result; per-class arrays follow `classes`. */
export interface ApPerClass {
  /** Classes that have labels, ascending (the reference's `ap_class`). */
  classes: Int32Array;
  /** Labels per class. */
  nt: Int32Array;
  /** AP, classes × thresholds, row-major. */
  ap: Float64Array;
  /** P, R, F1 per class at `bestIndex`. */
  p: Float64Array;
  r: Float64Array;
  f1: Float64Array;
  /** TP and FP per class at `bestIndex`, rebuilt from P and R like the reference. */
  tp: Float64Array;
  fp: Float64Array;
  /** 1000 confidences 0…1; also the recall axis of `prCurves`. */
  px: Float64Array;
  /** P, R, F1 over `px`, classes × 1000, row-major (zeros for classes without predictions). */
  pCurves: Float64Array;
  rCurves: Float64Array;
  f1Curves: Float64Array;
  /** Precision envelope at recall `px` for IoU 0.5; null for classes without predictions. */
  prCurves: (Float64Array | null)[];
  /** Index into `px` where the smoothed class-mean F1 peaks. */
  bestIndex: number;
}

/**
 * AP per class and threshold, and P/R at the best smoothed mean F1.
 * `tp` is N × nIou row-major (nonzero = true positive); conf and predCls have N entries.
 *
 * Detections are ordered by confidence descending with a stable sort (equal confidences keep their
 * insertion order); the reference's `argsort(-conf)` is a quicksort, whose order of ties is
 * implementation-defined.
 */
export function apPerClass(
  tp: ArrayLike<number>,
  nIou: number,
  conf: ArrayLike<number>,
  predCls: ArrayLike<number>,
  targetCls: ArrayLike<number>,
): ApPerClass {
  const n = conf.length;
  if (predCls.length !== n || tp.length !== n * nIou)
    throw new Yolo5Error(
      'E_ARG',
      `Expected tp (${n} × ${nIou}), conf and predCls for the same ${n} detections but received lengths ${tp.length}, ${n}, ${predCls.length}`,
    );
  // Float32 like the reference's tensors, so equal confidences tie the same way.
  const confF = Float32Array.from(conf);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => confF[b]! - confF[a]! || a - b);

  const sortedTargets = Int32Array.from(targetCls).sort();
  const classList: number[] = [];
  const counts: number[] = [];
  for (let i = 0; i < sortedTargets.length; i++) {
    if (i === 0 || sortedTargets[i] !== sortedTargets[i - 1]) {
      classList.push(sortedTargets[i]!);
      counts.push(0);
    }
    counts[counts.length - 1]!++;
  }
  const nc = classList.length;
  const classes = Int32Array.from(classList);
  const nt = Int32Array.from(counts);
  const classIndex = new Map<number, number>();
  classList.forEach((c, ci) => classIndex.set(c, ci));

  // Predictions of each class in confidence order; classes without labels are ignored.
  const perClass: number[][] = classList.map(() => []);
  for (const i of order) {
    const ci = classIndex.get(predCls[i]!);
    if (ci !== undefined) perClass[ci]!.push(i);
  }

  const px = linspace(0, 1, CURVE_POINTS);
  const negPx = px.map((v) => -v);
  const ap = new Float64Array(nc * nIou);
  const pCurves = new Float64Array(nc * CURVE_POINTS);
  const rCurves = new Float64Array(nc * CURVE_POINTS);
  const prCurves: (Float64Array | null)[] = classList.map(() => null);
  for (let ci = 0; ci < nc; ci++) {
    const idx = perClass[ci]!;
    const nP = idx.length;
    const nL = nt[ci]!;
    if (nP === 0 || nL === 0) continue;
    // xp must increase, so curves run over -conf (confidence descending).
    const negConf = new Float64Array(nP);
    for (let k = 0; k < nP; k++) negConf[k] = -confF[idx[k]!]!;
    const recall = new Float64Array(nP);
    const precision = new Float64Array(nP);
    for (let j = 0; j < nIou; j++) {
      let tpc = 0;
      let fpc = 0;
      for (let k = 0; k < nP; k++) {
        if (tp[idx[k]! * nIou + j]) tpc++;
        else fpc++;
        recall[k] = tpc / (nL + AP_EPS);
        precision[k] = tpc / (tpc + fpc);
      }
      if (j === 0) {
        rCurves.set(interp(negPx, negConf, recall, 0), ci * CURVE_POINTS);
        pCurves.set(interp(negPx, negConf, precision, 1), ci * CURVE_POINTS);
      }
      const curve = computeAp(recall, precision);
      ap[ci * nIou + j] = curve.ap;
      if (j === 0) prCurves[ci] = interp(px, curve.mrec, curve.mpre);
    }
  }

  const f1Curves = new Float64Array(nc * CURVE_POINTS);
  for (let k = 0; k < f1Curves.length; k++) {
    const p = pCurves[k]!;
    const r = rCurves[k]!;
    f1Curves[k] = (2 * p * r) / (p + r + AP_EPS);
  }
  const bestIndex = nc === 0 ? 0 : argmax(smooth(columnMean(f1Curves, nc, CURVE_POINTS), 0.1));
  const p = new Float64Array(nc);
  const r = new Float64Array(nc);
  const f1 = new Float64Array(nc);
  const tpAt = new Float64Array(nc);
  const fpAt = new Float64Array(nc);
  for (let ci = 0; ci < nc; ci++) {
    const k = ci * CURVE_POINTS + bestIndex;
    p[ci] = pCurves[k]!;
    r[ci] = rCurves[k]!;
    f1[ci] = f1Curves[k]!;
    tpAt[ci] = roundHalfEven(r[ci]! * nt[ci]!);
    fpAt[ci] = roundHalfEven(tpAt[ci]! / (p[ci]! + AP_EPS) - tpAt[ci]!);
  }
  return {
    classes,
    nt,
    ap,
    p,
    r,
    f1,
    tp: tpAt,
    fp: fpAt,
    px,
    pCurves,
    rCurves,
    f1Curves,
    prCurves,
    bestIndex,
  };
}

/** numpy's `a.mean(0)` of a rows × cols matrix: rows added one after another. */
function columnMean(a: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j]! += a[i * cols + j]!;
  for (let j = 0; j < cols; j++) out[j]! /= rows;
  return out;
}

export interface ClassMetrics {
  class: number;
  name: string;
  /** Images with at least one label of this class (the reference prints all images instead). */
  images: number;
  /** Labels of this class. */
  instances: number;
  precision: number;
  recall: number;
  f1: number;
  /** TP and FP at the chosen confidence, as the reference rebuilds them. */
  tp: number;
  fp: number;
  ap50: number;
  /** Mean AP over the 10 IoU thresholds. */
  ap50_95: number;
  /** AP at each IoU threshold. */
  ap: number[];
}

export interface MetricCurves {
  /** 1000 confidences 0…1 (the recall axis of `prPrecision`). */
  px: Float64Array;
  /** Class-mean P, R and F1 over `px` (F1 unsmoothed). */
  precision: Float64Array;
  recall: Float64Array;
  f1: Float64Array;
  /** Per class (rows follow `perClass`), classes × 1000 row-major. */
  classPrecision: Float64Array;
  classRecall: Float64Array;
  classF1: Float64Array;
  /** Precision envelope at recall `px` (IoU 0.5) per class; null for classes without predictions. */
  prPrecision: (Float64Array | null)[];
  /** Index into `px` where the smoothed mean F1 peaks (where P and R are read). */
  bestIndex: number;
}

export interface DetectionMetrics {
  /** Images added. */
  seen: number;
  /** Labels in all images. */
  instances: number;
  precision: number;
  recall: number;
  mAP50: number;
  mAP50_95: number;
  /** 0.1 · mAP50 + 0.9 · mAP50-95, the reference's model selection score. */
  fitness: number;
  /** Classes that have labels, ascending; empty when no detection is correct at any threshold. */
  perClass: ClassMetrics[];
  /** Labels per class, for all nc classes. */
  instancesPerClass: Int32Array;
  /** mAP50-95 per class for all nc classes, `mAP50_95` where a class has no row (reference's `maps`). */
  maps: Float64Array;
  /** Null when no detection is correct (the reference then computes and plots nothing). */
  curves: MetricCurves | null;
}

/** Class names as a list or a map by index. */
export type ClassNames = readonly string[] | Readonly<Record<number, string>>;

/**
 * Collects per-image matches over a data set and computes the reference's metrics.
 * Matching happens per image as images are added; nothing is kept per box beyond conf and class.
 */
export class DetectionStats {
  readonly iouv: Float32Array;
  #seen = 0;
  #correct: Uint8Array[] = [];
  #conf: Float32Array[] = [];
  #predCls: Int32Array[] = [];
  #targetCls: Int32Array[] = [];
  #imagesWithClass = new Map<number, number>();

  constructor(iouv: ArrayLike<number> = IOU_THRESHOLDS) {
    if (iouv.length === 0)
      throw new Yolo5Error('E_ARG', 'Expected at least one IoU threshold but received none');
    this.iouv = Float32Array.from(iouv);
  }

  get seen(): number {
    return this.#seen;
  }

  /** Matches one image's detections to its labels and keeps the result; returns `correct`. */
  addImage(detections: BoxRows, labels: BoxRows): Uint8Array {
    const det = toRows(detections, 6, 'detections');
    const lab = toRows(labels, 5, 'labels');
    const correct = matchRows(det, lab, this.iouv);
    const nDet = det.length / 6;
    const conf = new Float32Array(nDet);
    const cls = new Int32Array(nDet);
    for (let i = 0; i < nDet; i++) {
      conf[i] = det[i * 6 + 4]!;
      cls[i] = det[i * 6 + 5]!;
    }
    const target = new Int32Array(lab.length / 5);
    for (let i = 0; i < target.length; i++) target[i] = lab[i * 5]!;
    this.#push(correct, conf, cls, target);
    return correct;
  }

  /**
   * Adds an image matched elsewhere (e.g. natively): `correct` N × T row-major, conf and class per
   * detection, and the image's label classes.
   */
  addMatched(
    correct: ArrayLike<number>,
    conf: ArrayLike<number>,
    predCls: ArrayLike<number>,
    targetCls: ArrayLike<number>,
  ): void {
    const nT = this.iouv.length;
    if (predCls.length !== conf.length || correct.length !== conf.length * nT)
      throw new Yolo5Error(
        'E_ARG',
        `Expected correct (${conf.length} × ${nT}), conf and predCls for the same detections but received lengths ${correct.length}, ${conf.length}, ${predCls.length}`,
      );
    const cls = Int32Array.from(predCls);
    const target = Int32Array.from(targetCls);
    for (const [what, given, kept] of [
      ['predCls', predCls, cls],
      ['targetCls', targetCls, target],
    ] as const)
      for (let i = 0; i < given.length; i++)
        if (given[i] !== kept[i] || kept[i]! < 0)
          throw new Yolo5Error(
            'E_ARG',
            `Expected non-negative integer classes in ${what} but received ${show(given[i])}`,
            { value: given[i] },
          );
    const conf32 = Float32Array.from(conf);
    for (const c of conf32)
      if (!Number.isFinite(c))
        throw new Yolo5Error('E_ARG', `Expected finite confidences but received ${show(c)}`, {
          value: c,
        });
    this.#push(
      Uint8Array.from(correct, (v) => (v ? 1 : 0)),
      conf32,
      cls,
      target,
    );
  }

  #push(correct: Uint8Array, conf: Float32Array, cls: Int32Array, target: Int32Array): void {
    this.#seen++;
    // The reference keeps nothing for images with neither detections nor labels.
    if (conf.length === 0 && target.length === 0) return;
    this.#correct.push(correct);
    this.#conf.push(conf);
    this.#predCls.push(cls);
    this.#targetCls.push(target);
    for (const c of new Set(target))
      this.#imagesWithClass.set(c, (this.#imagesWithClass.get(c) ?? 0) + 1);
  }

  /** The metrics over everything added so far, for a model of `nc` classes. */
  compute(nc: number, names?: ClassNames): DetectionMetrics {
    if (!Number.isInteger(nc) || nc < 1)
      throw new Yolo5Error('E_ARG', `Expected a positive integer nc but received ${show(nc)}`, {
        value: nc,
      });
    const correct = concat(this.#correct, Uint8Array);
    const conf = concat(this.#conf, Float32Array);
    const predCls = concat(this.#predCls, Int32Array);
    const targetCls = concat(this.#targetCls, Int32Array);
    const instancesPerClass = new Int32Array(nc);
    for (const c of targetCls) {
      if (c >= nc)
        throw new Yolo5Error('E_ARG', `Expected label classes below nc=${nc} but received ${c}`, {
          value: c,
        });
      instancesPerClass[c]!++;
    }
    const result: DetectionMetrics = {
      seen: this.#seen,
      instances: targetCls.length,
      precision: 0,
      recall: 0,
      mAP50: 0,
      mAP50_95: 0,
      fitness: 0,
      perClass: [],
      instancesPerClass,
      maps: new Float64Array(nc),
      curves: null,
    };
    // Like the reference: without a single true positive nothing is computed and all stay 0.
    if (!correct.some((v) => v !== 0)) return result;

    const nT = this.iouv.length;
    const res = apPerClass(correct, nT, conf, predCls, targetCls);
    const nCls = res.classes.length;
    const ap50 = new Float64Array(nCls);
    const ap5095 = new Float64Array(nCls);
    for (let ci = 0; ci < nCls; ci++) {
      ap50[ci] = res.ap[ci * nT]!;
      ap5095[ci] = mean(res.ap, ci * nT, nT);
    }
    result.precision = mean(res.p);
    result.recall = mean(res.r);
    result.mAP50 = mean(ap50);
    result.mAP50_95 = mean(ap5095);
    result.fitness = 0.1 * result.mAP50 + 0.9 * result.mAP50_95;
    result.maps.fill(result.mAP50_95);
    result.perClass = Array.from(res.classes, (c, ci) => {
      result.maps[c] = ap5095[ci]!;
      return {
        class: c,
        name: className(names, c),
        images: this.#imagesWithClass.get(c) ?? 0,
        instances: res.nt[ci]!,
        precision: res.p[ci]!,
        recall: res.r[ci]!,
        f1: res.f1[ci]!,
        tp: res.tp[ci]!,
        fp: res.fp[ci]!,
        ap50: ap50[ci]!,
        ap50_95: ap5095[ci]!,
        ap: Array.from(res.ap.subarray(ci * nT, (ci + 1) * nT)),
      };
    });
    result.curves = {
      px: res.px,
      precision: columnMean(res.pCurves, nCls, CURVE_POINTS),
      recall: columnMean(res.rCurves, nCls, CURVE_POINTS),
      f1: columnMean(res.f1Curves, nCls, CURVE_POINTS),
      classPrecision: res.pCurves,
      classRecall: res.rCurves,
      classF1: res.f1Curves,
      prPrecision: res.prCurves,
      bestIndex: res.bestIndex,
    };
    return result;
  }
}

function className(names: ClassNames | undefined, c: number): string {
  const name = names === undefined ? undefined : (names as Readonly<Record<number, string>>)[c];
  return name ?? String(c);
}

type TypedArray = Uint8Array | Int32Array | Float32Array;

function concat<T extends TypedArray>(parts: T[], Ctor: { new (n: number): T }): T {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Ctor(n);
  let at = 0;
  for (const p of parts) {
    out.set(p as ArrayLike<number>, at);
    at += p.length;
  }
  return out;
}

export interface ConfusionMatrixOptions {
  /**
   * Reproduce v7.0 exactly: unmatched detections count as background only in images where at
   * least one label was matched (so images without labels add nothing). Off by default: every
   * unmatched detection is a background false positive, as later YOLOv5 versions count it.
   */
  v70BackgroundQuirk?: boolean;
}

/**
 * The reference's detection confusion matrix, (nc + 1)²: rows are predicted classes, columns true
 * classes, the last row/column is background. Matching ignores classes.
 */
export class ConfusionMatrix {
  readonly nc: number;
  readonly conf: number;
  readonly iouThres: number;
  /** Counts, (nc + 1) × (nc + 1) row-major: [predicted][true]. */
  readonly matrix: Float64Array;
  readonly #quirk: boolean;

  constructor(nc: number, conf = 0.25, iouThres = 0.45, options: ConfusionMatrixOptions = {}) {
    if (!Number.isInteger(nc) || nc < 1)
      throw new Yolo5Error('E_ARG', `Expected a positive integer nc but received ${show(nc)}`, {
        value: nc,
      });
    this.nc = nc;
    this.conf = conf;
    this.iouThres = iouThres;
    this.matrix = new Float64Array((nc + 1) * (nc + 1));
    this.#quirk = options.v70BackgroundQuirk === true;
  }

  /** Count at [predicted][true]; index nc is background. */
  at(predicted: number, truth: number): number {
    return this.matrix[predicted * (this.nc + 1) + truth]!;
  }

  #add(predicted: number, truth: number): void {
    this.matrix[predicted * (this.nc + 1) + truth]!++;
  }

  /** Adds one image: detections above `conf` are matched to labels at IoU > `iouThres`. */
  processBatch(detections: BoxRows, labels: BoxRows): void {
    const all = toRows(detections, 6, 'detections');
    const lab = toRows(labels, 5, 'labels');
    checkClasses(all, 6, 5, this.nc, 'detection');
    checkClasses(lab, 5, 0, this.nc, 'label');
    // Compared in float32, like the reference's tensor against a Python float.
    const confThres = f32(this.conf);
    const kept: number[] = [];
    for (let i = 0; i < all.length / 6; i++) if (all[i * 6 + 4]! > confThres) kept.push(i);
    const det = new Float32Array(kept.length * 6);
    kept.forEach((i, k) => det.set(all.subarray(i * 6, i * 6 + 6), k * 6));
    const nDet = kept.length;
    const nLab = lab.length / 5;

    const iou = iouMatrixF32(lab, 5, 1, det, 6, 0);
    const iouThres = f32(this.iouThres);
    const pairs: number[] = [];
    for (let k = 0; k < iou.length; k++) if (iou[k]! > iouThres) pairs.push(k);
    // Each detection keeps its highest-IoU label; then each label its highest-IoU survivor (equal
    // IoUs: the later detection, as the reference's second reversed argsort orders them).
    const detMatched = new Uint8Array(nDet);
    const labelDet = new Int32Array(nLab).fill(-1);
    for (const k of sortPairsByIouDesc(Int32Array.from(pairs), iou)) {
      const d = k % nDet;
      if (detMatched[d]) continue;
      detMatched[d] = 1;
      const l = (k - d) / nDet;
      const prev = labelDet[l]!;
      if (
        prev < 0 ||
        iou[k]! > iou[l * nDet + prev]! ||
        (iou[k] === iou[l * nDet + prev] && d > prev)
      )
        labelDet[l] = d;
    }
    detMatched.fill(0);
    let matched = 0;
    for (let l = 0; l < nLab; l++) {
      const d = labelDet[l]!;
      const truth = lab[l * 5]!;
      if (d >= 0) {
        this.#add(det[d * 6 + 5]!, truth);
        detMatched[d] = 1;
        matched++;
      } else this.#add(this.nc, truth);
    }
    if (this.#quirk && matched === 0) return;
    for (let d = 0; d < nDet; d++) if (!detMatched[d]) this.#add(det[d * 6 + 5]!, this.nc);
  }

  /** True and false positives per class (background excluded); fp = row sum − tp. */
  tpFp(): { tp: Float64Array; fp: Float64Array } {
    const n = this.nc + 1;
    const tp = new Float64Array(this.nc);
    const fp = new Float64Array(this.nc);
    for (let c = 0; c < this.nc; c++) {
      tp[c] = this.matrix[c * n + c]!;
      fp[c] = pairwiseSum(this.matrix, c * n, n) - tp[c]!;
    }
    return { tp, fp };
  }

  /** The counts as nested arrays, [predicted][true]. */
  toArray(): number[][] {
    const n = this.nc + 1;
    return Array.from({ length: n }, (_, i) => Array.from(this.matrix.subarray(i * n, i * n + n)));
  }
}

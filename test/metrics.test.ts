import { mulberry32 } from '../lib/train/random';
import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Yolo5Error } from '../lib/errors';
import {
  apPerClass,
  boxIou,
  boxIouMatrix,
  boxIouMatrixF32,
  computeAp,
  ConfusionMatrix,
  DetectionStats,
  interp,
  IOU_THRESHOLDS,
  linspace,
  matchImage,
  pairwiseSum,
  roundHalfEven,
  smooth,
} from '../lib/val/metrics';

// Exact values below marked "numpy" were computed with numpy 2.4 (np.interp, np.trapezoid,
// np.convolve, ndarray.mean) from the same inputs.

const T = IOU_THRESHOLDS.length;

/** A detection row: box, conf, class. */
function det(box: number[], conf: number, cls: number): number[] {
  return [...box, conf, cls];
}

/** A label row: class, box. */
function lab(cls: number, box: number[]): number[] {
  return [cls, ...box];
}

/** correct as rows of 0/1 strings per detection, for readable asserts. */
function rows(correct: Uint8Array): string[] {
  const out: string[] = [];
  for (let i = 0; i < correct.length; i += T) out.push(correct.slice(i, i + T).join(''));
  return out;
}

function close(actual: number, expected: number, tol = 1e-12, what = ''): void {
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what} expected ${expected} but got ${actual} (diff ${Math.abs(actual - expected)})`,
  );
}

function isArgError(e: unknown): boolean {
  return e instanceof Yolo5Error && e.code === 'E_ARG';
}

const BOX = [0, 0, 100, 100];

describe('numeric helpers', () => {
  test('IoU thresholds are linspace(0.5, 0.95, 10) in float32', () => {
    assert.deepEqual(
      Array.from(IOU_THRESHOLDS),
      [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95].map(Math.fround),
    );
  });

  test('linspace pins the last value and steps by i * step', () => {
    const x = linspace(0, 1, 101);
    assert.equal(x.length, 101);
    assert.equal(x[0], 0);
    assert.equal(x[100], 1);
    assert.equal(x[37], 37 * (1 / 100));
  });

  test('interp follows numpy: repeated xp take the last value, left/right outside', () => {
    // numpy: [10, 10, 15, 30, 35, 40, 40]
    assert.deepEqual(
      Array.from(interp([0, 1, 1.5, 2, 2.5, 3, 4], [1, 2, 2, 3], [10, 20, 30, 40])),
      [10, 10, 15, 30, 35, 40, 40],
    );
    assert.deepEqual(Array.from(interp([0, 4], [1, 2, 2, 3], [10, 20, 30, 40], -1, -2)), [-1, -2]);
    assert.deepEqual(Array.from(interp([0, 1, 2], [1], [5])), [5, 5, 5]);
    assert.throws(() => interp([0], [], []), isArgError);
  });

  test('computeAp: 101-point AP of simple curves', () => {
    // A perfect detection: the envelope drops to 0 at recall 1 itself, hence 0.995 (numpy).
    assert.equal(computeAp([1], [1]).ap, 0.995);
    assert.equal(computeAp([0.5], [1]).ap, 0.75);
    assert.equal(computeAp([1, 1], [1, 0.5]).ap, 0.995);
    // TP then FP with half the labels found: 0.49 + 0.0075 + 0.125 (numpy: 0.6224999999999999).
    assert.equal(computeAp([0.5, 0.5], [1, 0.5]).ap, 0.6224999999999999);
    // FP before the TP: the envelope is 0.5 from recall 0.
    assert.equal(computeAp([0, 0.5], [0, 0.5]).ap, 0.375);
    const { mrec, mpre } = computeAp([0.5, 0.5], [1, 0.5]);
    assert.deepEqual(Array.from(mrec), [0, 0.5, 0.5, 1]);
    assert.deepEqual(Array.from(mpre), [1, 1, 0.5, 0]);
  });

  test('pairwise sums and rounding like numpy and Python', () => {
    const a = computeAp([1], [1]).ap;
    assert.equal(pairwiseSum([a, a, a, 0, 0, 0, 0, 0, 0, 0]) / 10, 0.2985); // numpy
    assert.equal(pairwiseSum(new Array(10).fill(a)) / 10, 0.9949999999999999); // numpy
    assert.deepEqual(
      [2.5, 3.5, -2.5, 0.5, 1.5, 2.4, 2.6].map(roundHalfEven),
      [2, 4, -2, 0, 2, 2, 3],
    );
  });

  test('smooth: box filter width round(len * f * 2) // 2 + 1, ends padded', () => {
    const y = [0, 1, 4, 9, 16, 25, 36, 49, 64, 81];
    // numpy, 3 taps
    const three = [
      0.3333333333333333, 1.6666666666666665, 4.666666666666666, 9.666666666666666,
      16.666666666666664, 25.666666666666664, 36.666666666666664, 49.666666666666664,
      64.66666666666666, 75.33333333333333,
    ];
    const s3 = smooth(y, 0.25);
    three.forEach((v, i) => close(s3[i]!, v, 1e-13, `smooth[${i}]`));
    // round(2.5) = 2 taps (half to even), which makes the output one longer (numpy)
    assert.deepEqual(
      Array.from(smooth(y, 0.125)),
      [0, 0.5, 2.5, 6.5, 12.5, 20.5, 30.5, 42.5, 56.5, 72.5, 81],
    );
    assert.equal(smooth(new Float64Array(1000), 0.1).length, 1000);
  });

  test('boxIou and the IoU matrices', () => {
    close(boxIou([0, 0, 10, 10], [5, 0, 15, 10]), 1 / 3);
    assert.equal(boxIou([0, 0, 10, 10], [0, 0, 10, 10]), 1);
    assert.equal(boxIou([0, 0, 10, 10], [20, 20, 30, 30]), 0);
    assert.equal(boxIou([5, 5, 5, 5], [5, 5, 5, 5]), 0);
    const m = boxIouMatrix(
      [
        [0, 0, 10, 10],
        [0, 0, 10, 5],
      ],
      [0, 0, 10, 10, 5, 0, 15, 10, 100, 100, 110, 110],
    );
    assert.equal(m.length, 6);
    assert.deepEqual(Array.from(m), [1, 1 / 3, 0, 0.5, 0.25 / 1.25, 0]);
    const m32 = boxIouMatrixF32([[0, 0, 10, 10]], [[5, 0, 15, 10]]);
    close(m32[0]!, 1 / 3, 1e-7);
    assert.throws(() => boxIouMatrix([[0, 0, 1]], [[0, 0, 1, 1]]), isArgError);
  });
});

describe('matchImage', () => {
  test('a perfect detection is correct at every threshold', () => {
    assert.deepEqual(rows(matchImage([det(BOX, 0.9, 0)], [lab(0, BOX)])), ['1111111111']);
  });

  test('a second detection of the same object is a false positive', () => {
    const c = matchImage([det(BOX, 0.9, 0), det([1, 1, 100, 100], 0.8, 0)], [lab(0, BOX)]);
    assert.deepEqual(rows(c), ['1111111111', '0000000000']);
  });

  test('a detection of another class never matches', () => {
    assert.deepEqual(rows(matchImage([det(BOX, 0.9, 1)], [lab(0, BOX)])), ['0000000000']);
  });

  test('IoU 0.62 is correct at 0.50–0.60 only; exact 0.5 and 0.75 count (>=)', () => {
    assert.deepEqual(rows(matchImage([det([0, 0, 100, 62], 0.9, 0)], [lab(0, BOX)])), [
      '1110000000',
    ]);
    assert.deepEqual(rows(matchImage([det([0, 0, 100, 50], 0.9, 0)], [lab(0, BOX)])), [
      '1000000000',
    ]);
    assert.deepEqual(rows(matchImage([det([0, 0, 100, 75], 0.9, 0)], [lab(0, BOX)])), [
      '1111110000',
    ]);
  });

  test('dedup order: unique by detection on the IoU order, then by label in detection order', () => {
    // d0 (IoU 0.62) and d1 (IoU 0.97) both cover the label. Both survive the detection pass; the
    // label then goes to the first survivor in detection order, d0, not to the higher IoU.
    const c = matchImage(
      [det([0, 0, 100, 62], 0.9, 0), det([0, 0, 100, 97], 0.8, 0)],
      [lab(0, BOX)],
    );
    assert.deepEqual(rows(c), ['1110000000', '0001111111']);
  });

  test('dedup is not an optimal assignment', () => {
    // d0 overlaps l0 (0.85) and l1 (0.79), d1 overlaps l0 (0.82) and l1 (0.54). Both detections
    // keep l0, which then goes to d0: one TP, although d0→l1 and d1→l0 would give two.
    const l0 = [0, 0, 100, 100];
    const l1 = [20, 0, 120, 100];
    const d0 = [8, 0, 108, 100];
    const d1 = [-10, 0, 90, 100];
    const iou = boxIouMatrix([l0, l1], [d0, d1]);
    close(iou[0]!, 92 / 108);
    close(iou[1]!, 90 / 110);
    close(iou[2]!, 88 / 112);
    close(iou[3]!, 70 / 130);
    const c = matchImage([det(d0, 0.9, 0), det(d1, 0.8, 0)], [lab(0, l0), lab(0, l1)]);
    assert.deepEqual(rows(c), ['1111111100', '0000000000']);
  });

  test('empty images', () => {
    assert.deepEqual(rows(matchImage([det(BOX, 0.9, 0), det(BOX, 0.5, 1)], [])), [
      '0000000000',
      '0000000000',
    ]);
    assert.equal(matchImage([], [lab(0, BOX)]).length, 0);
    assert.equal(matchImage(new Float32Array(0), new Float32Array(0)).length, 0);
  });

  test('flat typed arrays and custom thresholds', () => {
    const c = matchImage(new Float32Array(det([0, 0, 100, 62], 0.9, 0)), lab(0, BOX), [0.5, 0.7]);
    assert.deepEqual(Array.from(c), [1, 0]);
  });

  test('bad rows are E_ARG errors', () => {
    assert.throws(() => matchImage([[0, 0, 1, 1, 0.5]], []), isArgError);
    assert.throws(() => matchImage([0, 0, 1, 1, 0.5, 0, 1], []), isArgError);
    assert.throws(() => matchImage([], [[0, 0, 0, 1]]), isArgError);
    assert.throws(() => matchImage([det(BOX, 0.5, -1)], []), isArgError);
    assert.throws(() => matchImage([det(BOX, 0.5, 1.5)], []), isArgError);
    assert.throws(() => matchImage([det([0, 0, NaN, 1], 0.5, 0)], []), isArgError);
  });
});

describe('DetectionStats', () => {
  test('one perfect detection', () => {
    const s = new DetectionStats();
    s.addImage([det(BOX, 0.9, 0)], [lab(0, BOX)]);
    const m = s.compute(1, ['cat']);
    assert.equal(m.seen, 1);
    assert.equal(m.instances, 1);
    assert.equal(m.precision, 1);
    assert.equal(m.recall, 1);
    assert.equal(m.mAP50, 0.995);
    assert.equal(m.mAP50_95, 0.9949999999999999);
    close(m.fitness, 0.995);
    assert.equal(m.perClass.length, 1);
    const c = m.perClass[0]!;
    assert.equal(c.name, 'cat');
    assert.equal(c.images, 1);
    assert.equal(c.instances, 1);
    assert.equal(c.tp, 1);
    assert.equal(c.fp, 0);
    assert.deepEqual(c.ap, new Array(10).fill(0.995));
    assert.ok(m.curves);
    assert.equal(m.curves.px.length, 1000);
  });

  test('AP50 versus AP50-95 for a loose box', () => {
    const s = new DetectionStats();
    s.addImage([det([0, 0, 100, 62], 0.9, 0)], [lab(0, BOX)]);
    const m = s.compute(1);
    assert.equal(m.mAP50, 0.995);
    assert.equal(m.mAP50_95, 0.2985); // numpy mean of [0.995] * 3 + [0] * 7
    assert.equal(m.fitness, 0.1 * 0.995 + 0.9 * 0.2985);
    assert.deepEqual(m.perClass[0]!.ap, [0.995, 0.995, 0.995, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(m.perClass[0]!.name, '0');
  });

  test('duplicates, missed labels, empty images and confidence order', () => {
    // A: perfect, B: a label nobody found, C: a false positive, D: nothing at all.
    const build = (fpConf: number): ReturnType<DetectionStats['compute']> => {
      const s = new DetectionStats();
      s.addImage([det(BOX, 0.9, 0)], [lab(0, BOX)]);
      s.addImage([], [lab(0, BOX)]);
      s.addImage([det(BOX, fpConf, 0)], []);
      s.addImage([], []);
      return s.compute(2, { 0: 'a', 1: 'b' });
    };
    const low = build(0.8);
    assert.equal(low.seen, 4);
    assert.equal(low.instances, 2);
    assert.equal(low.perClass[0]!.images, 2);
    assert.equal(low.mAP50, 0.6224999999999999); // recall [.5, .5], precision [1, .5]
    const high = build(0.95);
    assert.equal(high.mAP50, 0.375); // the FP ranks first: recall [0, .5], precision [0, .5]
    assert.equal(high.perClass[0]!.name, 'a');
  });

  test('a class without labels is left out, and maps falls back to mAP50-95', () => {
    const s = new DetectionStats();
    s.addImage(
      [det(BOX, 0.9, 0), det([200, 200, 300, 300], 0.95, 1)],
      [lab(0, BOX), lab(0, [400, 400, 450, 450])],
    );
    const m = s.compute(3);
    assert.deepEqual(
      m.perClass.map((c) => c.class),
      [0],
    );
    assert.deepEqual(Array.from(m.instancesPerClass), [2, 0, 0]);
    assert.equal(m.maps[0], m.perClass[0]!.ap50_95);
    assert.equal(m.maps[1], m.mAP50_95);
    assert.equal(m.maps[2], m.mAP50_95);
    assert.equal(m.perClass[0]!.recall, 0.5);
    assert.equal(m.mAP50, 0.75);
  });

  test('no true positive anywhere: zeros and no per-class rows, like the reference', () => {
    const s = new DetectionStats();
    s.addImage([det(BOX, 0.9, 1)], [lab(0, BOX)]);
    const m = s.compute(2);
    assert.equal(m.instances, 1);
    assert.equal(m.mAP50, 0);
    assert.equal(m.precision, 0);
    assert.deepEqual(m.perClass, []);
    assert.equal(m.curves, null);
  });

  test('images counts images with the class, instances counts labels', () => {
    const s = new DetectionStats();
    s.addImage([det(BOX, 0.9, 0)], [lab(0, BOX), lab(0, [200, 200, 300, 300]), lab(1, BOX)]);
    s.addImage([det(BOX, 0.9, 0)], [lab(0, BOX)]);
    const m = s.compute(2);
    assert.deepEqual(
      m.perClass.map((c) => [c.class, c.images, c.instances]),
      [
        [0, 2, 3],
        [1, 1, 1],
      ],
    );
  });

  test('F1 smoothing picks P and R away from the raw F1 peak', () => {
    // 1 label; TP at conf 0.5, FP at 0.49. Raw F1 peaks just below px = 0.5 (P near 1); the
    // 101-tap smoothed mean peaks at index 449, the last window wholly below 0.5, where P = 0.5.
    const s = new DetectionStats();
    s.addImage([det(BOX, 0.5, 0), det([300, 300, 400, 400], 0.49, 0)], [lab(0, BOX)]);
    const m = s.compute(1);
    assert.ok(m.curves);
    const raw = m.curves.f1;
    let rawBest = 0;
    for (let i = 0; i < raw.length; i++) if (raw[i]! > raw[rawBest]!) rawBest = i;
    assert.equal(rawBest, 499);
    assert.equal(m.curves.bestIndex, 449);
    const c = m.perClass[0]!;
    assert.equal(c.precision, 0.5);
    assert.equal(c.recall, 1);
    assert.equal(c.f1, 2 / 3);
    assert.equal(c.tp, 1);
    assert.equal(c.fp, 1);
  });

  test('addMatched gives the same metrics as addImage', () => {
    const a = new DetectionStats();
    const b = new DetectionStats();
    const dets = [det(BOX, 0.9, 0), det([0, 0, 100, 62], 0.7, 1)];
    const labels = [lab(0, BOX), lab(1, BOX)];
    const correct = a.addImage(dets, labels);
    b.addMatched(correct, [0.9, 0.7], [0, 1], [0, 1]);
    assert.deepEqual(b.compute(2), a.compute(2));
    assert.throws(() => b.addMatched([1], [0.9], [0], [0]), isArgError);
    assert.throws(() => b.addMatched(new Uint8Array(10), [0.9], [0.5], [0]), isArgError);
  });

  test('label classes must be below nc', () => {
    const s = new DetectionStats();
    s.addImage([], [lab(3, BOX)]);
    assert.throws(() => s.compute(3), isArgError);
    assert.throws(() => s.compute(0), isArgError);
  });
});

// ---------------------------------------------------------------------------------------------
// A slow, literal version of the reference's rules, to compare against on random data.

const f = Math.fround;

function slowIou(l: number[], d: number[]): number {
  // Float32 at every step and eps 1e-7, like torch's box_iou on float32 tensors.
  const b = l.map(f);
  const a = d.map(f);
  const w = Math.max(f(Math.min(b[2]!, a[2]!) - Math.max(b[0]!, a[0]!)), 0);
  const h = Math.max(f(Math.min(b[3]!, a[3]!) - Math.max(b[1]!, a[1]!)), 0);
  const inter = f(w * h);
  const areaL = f(f(b[2]! - b[0]!) * f(b[3]! - b[1]!));
  const areaD = f(f(a[2]! - a[0]!) * f(a[3]! - a[1]!));
  return f(inter / f(f(f(areaL + areaD) - inter) + f(1e-7)));
}

interface Pair {
  l: number;
  d: number;
  iou: number;
}

function slowMatch(dets: number[][], labels: number[][]): number[][] {
  const correct = dets.map(() => new Array<number>(T).fill(0));
  for (let t = 0; t < T; t++) {
    let pairs: Pair[] = [];
    labels.forEach((L, l) =>
      dets.forEach((D, d) => {
        const iou = slowIou(L.slice(1), D.slice(0, 4));
        if (iou >= IOU_THRESHOLDS[t]! && f(L[0]!) === f(D[5]!)) pairs.push({ l, d, iou });
      }),
    );
    // Ascending stable argsort, then reversed; ties: the later (label, detection) pair first.
    pairs = pairs
      .map((p, k) => ({ ...p, k }))
      .sort((a, b) => a.iou - b.iou || a.k - b.k)
      .reverse();
    const byDet = new Map<number, Pair>();
    for (const p of pairs) if (!byDet.has(p.d)) byDet.set(p.d, p);
    const inDetOrder = [...byDet.values()].sort((a, b) => a.d - b.d);
    const byLabel = new Map<number, Pair>();
    for (const p of inDetOrder) if (!byLabel.has(p.l)) byLabel.set(p.l, p);
    for (const p of byLabel.values()) correct[p.d]![t] = 1;
  }
  return correct;
}

function slowInterp(x: number, xp: number[], fp: number[], left: number): number {
  if (x < xp[0]!) return left;
  if (x > xp[xp.length - 1]!) return fp[fp.length - 1]!;
  let j = 0;
  for (let k = 0; k < xp.length; k++) if (xp[k]! <= x) j = k;
  if (j === xp.length - 1 || xp[j] === x) return fp[j]!;
  return fp[j]! + ((fp[j + 1]! - fp[j]!) / (xp[j + 1]! - xp[j]!)) * (x - xp[j]!);
}

function slowAp(recall: number[], precision: number[]): number {
  const mrec = [0, ...recall, 1];
  const mpre = [1, ...precision, 0];
  for (let i = mpre.length - 2; i >= 0; i--) mpre[i] = Math.max(mpre[i]!, mpre[i + 1]!);
  let area = 0;
  for (let i = 0; i < 100; i++) {
    const x0 = i / 100;
    const x1 = i === 99 ? 1 : (i + 1) / 100;
    area += ((x1 - x0) * (slowInterp(x0, mrec, mpre, 1) + slowInterp(x1, mrec, mpre, 1))) / 2;
  }
  return area;
}

interface SlowMetrics {
  classes: number[];
  ap: number[][];
  p: number[];
  r: number[];
  best: number;
}

function slowMetrics(images: { dets: number[][]; labels: number[][] }[]): SlowMetrics {
  const all: { correct: number[]; conf: number; cls: number }[] = [];
  const targets: number[] = [];
  for (const { dets, labels } of images) {
    const c = slowMatch(dets, labels);
    dets.forEach((d, i) => all.push({ correct: c[i]!, conf: f(d[4]!), cls: d[5]! }));
    for (const l of labels) targets.push(l[0]!);
  }
  all.sort((a, b) => b.conf - a.conf); // Array sort is stable: ties keep insertion order
  const classes = [...new Set(targets)].sort((a, b) => a - b);
  const px = Array.from({ length: 1000 }, (_, i) => (i === 999 ? 1 : i * (1 / 999)));
  const ap: number[][] = [];
  const pc: number[][] = [];
  const rc: number[][] = [];
  for (const c of classes) {
    const nl = targets.filter((t) => t === c).length;
    const preds = all.filter((p) => p.cls === c);
    const apRow = new Array<number>(T).fill(0);
    const pRow = new Array<number>(1000).fill(0);
    const rRow = new Array<number>(1000).fill(0);
    if (preds.length > 0) {
      for (let t = 0; t < T; t++) {
        let tpc = 0;
        const recall: number[] = [];
        const precision: number[] = [];
        preds.forEach((p, k) => {
          tpc += p.correct[t]!;
          recall.push(tpc / nl);
          precision.push(tpc / (k + 1));
        });
        apRow[t] = slowAp(recall, precision);
        if (t === 0) {
          const negConf = preds.map((p) => -p.conf);
          px.forEach((x, i) => {
            rRow[i] = slowInterp(-x, negConf, recall, 0);
            pRow[i] = slowInterp(-x, negConf, precision, 1);
          });
        }
      }
    }
    ap.push(apRow);
    pc.push(pRow);
    rc.push(rRow);
  }
  // Mean F1 over classes, padded box filter of 101 taps, first maximum.
  const meanF1 = px.map((_, i) => {
    let s = 0;
    for (let k = 0; k < classes.length; k++) {
      const p = pc[k]![i]!;
      const r = rc[k]![i]!;
      s += (2 * p * r) / (p + r + 1e-16);
    }
    return s / classes.length;
  });
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < 1000; i++) {
    let s = 0;
    for (let k = -50; k <= 50; k++) s += meanF1[Math.min(Math.max(i + k, 0), 999)]! * (1 / 101);
    if (s > bestValue) {
      bestValue = s;
      best = i;
    }
  }
  return {
    classes,
    ap,
    p: pc.map((row) => row[best]!),
    r: rc.map((row) => row[best]!),
    best,
  };
}

const rng = mulberry32;

function randomImages(seed: number, count: number): { dets: number[][]; labels: number[][] }[] {
  const rand = rng(seed);
  const images: { dets: number[][]; labels: number[][] }[] = [];
  for (let n = 0; n < count; n++) {
    const labels: number[][] = [];
    const nl = Math.floor(rand() * 6);
    for (let i = 0; i < nl; i++) {
      const x = rand() * 200;
      const y = rand() * 200;
      labels.push([Math.floor(rand() * 3), x, y, x + 10 + rand() * 60, y + 10 + rand() * 60]);
    }
    const dets: number[][] = [];
    const nd = Math.floor(rand() * 9);
    for (let i = 0; i < nd; i++) {
      let box: number[];
      let cls = Math.floor(rand() * 4); // class 3 never has labels
      if (nl > 0 && rand() < 0.75) {
        const l = labels[Math.floor(rand() * nl)]!;
        const jitter = () => (rand() - 0.5) * 16;
        box = [l[1]! + jitter(), l[2]! + jitter(), l[3]! + jitter(), l[4]! + jitter()];
        if (rand() < 0.8) cls = l[0]!;
      } else {
        const x = rand() * 200;
        const y = rand() * 200;
        box = [x, y, x + 10 + rand() * 60, y + 10 + rand() * 60];
      }
      // Coarse confidences so that ties happen.
      dets.push([...box, Math.ceil(rand() * 40) / 40, cls]);
    }
    dets.sort((a, b) => b[4]! - a[4]!); // NMS output order
    images.push({ dets, labels });
  }
  return images;
}

describe('randomised comparison with a slow reimplementation', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    test(`seed ${seed}: 50 images`, () => {
      const images = randomImages(seed, 50);
      const stats = new DetectionStats();
      for (const { dets, labels } of images) {
        const fast = stats.addImage(dets, labels);
        assert.deepEqual(
          rows(fast),
          slowMatch(dets, labels).map((r) => r.join('')),
        );
      }
      const m = stats.compute(4);
      const slow = slowMetrics(images);
      assert.ok(m.curves);
      assert.deepEqual(
        m.perClass.map((c) => c.class),
        slow.classes,
      );
      assert.equal(m.curves.bestIndex, slow.best);
      m.perClass.forEach((c, k) => {
        c.ap.forEach((v, t) => close(v, slow.ap[k]![t]!, 1e-12, `class ${c.class} AP[${t}]`));
        close(c.precision, slow.p[k]!, 1e-12, `class ${c.class} P`);
        close(c.recall, slow.r[k]!, 1e-12, `class ${c.class} R`);
      });
      const meanOf = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
      close(m.mAP50, meanOf(slow.ap.map((a) => a[0]!)), 1e-12, 'mAP50');
      close(m.mAP50_95, meanOf(slow.ap.map(meanOf)), 1e-12, 'mAP50-95');
      close(m.precision, meanOf(slow.p), 1e-12, 'P');
      close(m.recall, meanOf(slow.r), 1e-12, 'R');
      assert.equal(m.seen, 50);
      assert.equal(
        m.instances,
        images.reduce((s, im) => s + im.labels.length, 0),
      );
    });
  }

  test('apPerClass matches the slow version on the same stats', () => {
    const images = randomImages(9, 50);
    const correct: number[] = [];
    const conf: number[] = [];
    const cls: number[] = [];
    const targets: number[] = [];
    for (const { dets, labels } of images) {
      correct.push(...matchImage(dets, labels));
      for (const d of dets) {
        conf.push(d[4]!);
        cls.push(d[5]!);
      }
      for (const l of labels) targets.push(l[0]!);
    }
    const res = apPerClass(correct, T, conf, cls, targets);
    const slow = slowMetrics(images);
    assert.deepEqual(Array.from(res.classes), slow.classes);
    assert.equal(res.bestIndex, slow.best);
    res.ap.forEach((v, i) => close(v, slow.ap[Math.floor(i / T)]![i % T]!, 1e-12));
    assert.throws(() => apPerClass([1], T, [0.5], [0], [0]), isArgError);
  });
});

describe('ConfusionMatrix', () => {
  const at = (cm: ConfusionMatrix) => cm.toArray();

  test('TP, confusion, background FP and FN, confidence filter', () => {
    const cm = new ConfusionMatrix(3);
    cm.processBatch(
      [
        det([0, 0, 10, 10], 0.9, 0), // TP class 0
        det([20, 20, 30, 30], 0.8, 2), // label 1 predicted as 2
        det([80, 80, 90, 90], 0.7, 1), // nothing there: background FP
        det([50, 50, 60, 60], 0.25, 2), // conf not above 0.25: dropped, so label 2 is missed
      ],
      [lab(0, [0, 0, 10, 10]), lab(1, [20, 20, 30, 30]), lab(2, [50, 50, 60, 60])],
    );
    assert.deepEqual(at(cm), [
      [1, 0, 0, 0],
      [0, 0, 0, 1],
      [0, 1, 0, 0],
      [0, 0, 1, 0],
    ]);
    assert.equal(cm.at(2, 1), 1);
    const { tp, fp } = cm.tpFp();
    assert.deepEqual(Array.from(tp), [1, 0, 0]);
    assert.deepEqual(Array.from(fp), [0, 1, 1]);
  });

  test('images without labels, and without any overlap', () => {
    const fixed = new ConfusionMatrix(2);
    const quirk = new ConfusionMatrix(2, 0.25, 0.45, { v70BackgroundQuirk: true });
    for (const cm of [fixed, quirk]) {
      cm.processBatch([det(BOX, 0.5, 0)], []);
      cm.processBatch([det([200, 200, 300, 300], 0.5, 1)], [lab(1, BOX)]);
      cm.processBatch([], [lab(0, BOX)]);
    }
    assert.deepEqual(at(fixed), [
      [0, 0, 1],
      [0, 0, 1],
      [1, 1, 0],
    ]);
    // v7.0 counts unmatched detections only in images where something matched.
    assert.deepEqual(at(quirk), [
      [0, 0, 0],
      [0, 0, 0],
      [1, 1, 0],
    ]);
  });

  test('labels keep their highest-IoU detection (unlike the val matching)', () => {
    const dets = [det([0, 0, 100, 62], 0.9, 0), det([0, 0, 100, 97], 0.8, 0)];
    const cm = new ConfusionMatrix(1);
    cm.processBatch(dets, [lab(0, BOX)]);
    // d1 (IoU 0.97) is the match, d0 a background FP; matchImage gives the label to d0 instead.
    assert.deepEqual(at(cm), [
      [1, 1],
      [0, 0],
    ]);
    assert.deepEqual(rows(matchImage(dets, [lab(0, BOX)]))[0], '1110000000');
  });

  test('matching ignores the class and needs IoU above the threshold', () => {
    const cm = new ConfusionMatrix(2, 0.25, 0.5);
    cm.processBatch([det([0, 0, 100, 50], 0.9, 1)], [lab(0, BOX)]); // IoU exactly 0.5: no match
    cm.processBatch([det([0, 0, 100, 60], 0.9, 1)], [lab(0, BOX)]); // 0.6: class 1 for a 0
    assert.deepEqual(at(cm), [
      [0, 0, 0],
      [1, 0, 1],
      [1, 0, 0],
    ]);
  });

  test('bad arguments', () => {
    assert.throws(() => new ConfusionMatrix(0), isArgError);
    const cm = new ConfusionMatrix(2);
    assert.throws(() => cm.processBatch([det(BOX, 0.9, 2)], []), isArgError);
    assert.throws(() => cm.processBatch([], [lab(5, BOX)]), isArgError);
  });
});

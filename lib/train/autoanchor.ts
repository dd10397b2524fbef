/**
 * Autoanchor: checks how well the model's anchors fit the training labels (best possible recall)
 * and, below 0.98, replaces them with k-means anchors refined by a genetic search — only when
 * that improves the recall.
 */
import type { Model } from '../model/model';
import { gaussian, mulberry32 } from './random';

interface Item {
  width: number;
  height: number;
  labels: number[][];
}

/** Label sizes in pixels at the training size: [w, h] pairs. */
function labelSizes(items: Item[], imgsz: number, scale?: () => number): Float64Array {
  const out: number[] = [];
  for (const it of items) {
    const m = Math.max(it.width, it.height);
    const sw = (imgsz * it.width) / m;
    const sh = (imgsz * it.height) / m;
    const s = scale ? scale() : 1;
    for (const l of it.labels) out.push(l[3]! * sw * s, l[4]! * sh * s);
  }
  return Float64Array.from(out);
}

/** For each label, the best anchor's worst side ratio min(r, 1/r); and anchors above threshold. */
function ratios(
  wh: Float64Array,
  anchors: Float64Array,
  thr: number,
): { best: Float64Array; aat: number } {
  const n = wh.length / 2;
  const k = anchors.length / 2;
  const best = new Float64Array(n);
  let above = 0;
  for (let i = 0; i < n; i++) {
    let b = 0;
    for (let j = 0; j < k; j++) {
      const rw = wh[2 * i]! / anchors[2 * j]!;
      const rh = wh[2 * i + 1]! / anchors[2 * j + 1]!;
      const x = Math.min(rw, 1 / rw, rh, 1 / rh);
      if (x > b) b = x;
      if (x > thr) above++;
    }
    best[i] = b;
  }
  return { best, aat: n > 0 ? above / n : 0 };
}

export function bestPossibleRecall(
  wh: Float64Array,
  anchors: Float64Array,
  anchorT: number,
): { bpr: number; aat: number } {
  const { best, aat } = ratios(wh, anchors, 1 / anchorT);
  let hit = 0;
  for (const b of best) if (b > 1 / anchorT) hit++;
  return { bpr: best.length > 0 ? hit / best.length : 1, aat };
}

function fitness(wh: Float64Array, anchors: Float64Array, thr: number): number {
  const { best } = ratios(wh, anchors, thr);
  let s = 0;
  for (const b of best) if (b > thr) s += b;
  return best.length > 0 ? s / best.length : 0;
}

function sortByArea(k: Float64Array): Float64Array {
  const idx = Array.from({ length: k.length / 2 }, (_, i) => i).sort(
    (a, b) => k[2 * a]! * k[2 * a + 1]! - k[2 * b]! * k[2 * b + 1]!,
  );
  return Float64Array.from(idx.flatMap((i) => [k[2 * i]!, k[2 * i + 1]!]));
}

/** k-means on whitened label sizes (Lloyd's, 30 iterations, farthest-point start), then evolution. */
export function kmeanAnchors(
  whAll: Float64Array,
  n: number,
  imgsz: number,
  anchorT: number,
  generations = 1000,
  seed = 0,
): Float64Array {
  const rand = mulberry32(seed + 1);
  const thr = 1 / anchorT;
  const keep: number[] = [];
  for (let i = 0; i < whAll.length; i += 2)
    if (whAll[i]! >= 2 || whAll[i + 1]! >= 2) keep.push(whAll[i]!, whAll[i + 1]!);
  const wh = Float64Array.from(keep);
  const m = wh.length / 2;
  let k: Float64Array;
  if (m >= n) {
    const std = [0, 1].map((d) => {
      let mean = 0;
      for (let i = 0; i < m; i++) mean += wh[2 * i + d]!;
      mean /= m;
      let v = 0;
      for (let i = 0; i < m; i++) v += (wh[2 * i + d]! - mean) ** 2;
      return Math.sqrt(v / m) || 1;
    });
    const pts = Float64Array.from(wh, (v, i) => v / std[i % 2]!);
    const c = new Float64Array(n * 2);
    const first = Math.floor(rand() * m);
    c[0] = pts[2 * first]!;
    c[1] = pts[2 * first + 1]!;
    for (let j = 1; j < n; j++) {
      let far = 0;
      let farD = -1;
      for (let i = 0; i < m; i++) {
        let d = Infinity;
        for (let q = 0; q < j; q++)
          d = Math.min(d, (pts[2 * i]! - c[2 * q]!) ** 2 + (pts[2 * i + 1]! - c[2 * q + 1]!) ** 2);
        if (d > farD) ((farD = d), (far = i));
      }
      c[2 * j] = pts[2 * far]!;
      c[2 * j + 1] = pts[2 * far + 1]!;
    }
    for (let it = 0; it < 30; it++) {
      const sum = new Float64Array(n * 2);
      const cnt = new Float64Array(n);
      for (let i = 0; i < m; i++) {
        let bj = 0;
        let bd = Infinity;
        for (let j = 0; j < n; j++) {
          const d = (pts[2 * i]! - c[2 * j]!) ** 2 + (pts[2 * i + 1]! - c[2 * j + 1]!) ** 2;
          if (d < bd) ((bd = d), (bj = j));
        }
        sum[2 * bj]! += pts[2 * i]!;
        sum[2 * bj + 1]! += pts[2 * i + 1]!;
        cnt[bj]!++;
      }
      for (let j = 0; j < n; j++) {
        if (cnt[j]! > 0) {
          c[2 * j] = sum[2 * j]! / cnt[j]!;
          c[2 * j + 1] = sum[2 * j + 1]! / cnt[j]!;
        }
      }
    }
    k = Float64Array.from(c, (v, i) => v * std[i % 2]!);
  } else {
    k = Float64Array.from({ length: n * 2 }, () => rand() * imgsz).sort();
  }
  k = sortByArea(k);
  let f = fitness(wh, k, thr);
  for (let g = 0; g < generations; g++) {
    const v = new Float64Array(k.length).fill(1);
    while (v.every((x) => x === 1)) {
      const r = rand();
      for (let i = 0; i < v.length; i++) {
        v[i] = rand() < 0.9 ? Math.min(Math.max(r * gaussian(rand) * 0.1 + 1, 0.3), 3.0) : 1;
      }
    }
    const kg = Float64Array.from(k, (x, i) => Math.max(x * v[i]!, 2));
    const fg = fitness(wh, kg, thr);
    if (fg > f) {
      f = fg;
      k = kg;
    }
  }
  return sortByArea(k);
}

/**
 * Checks the anchors against the labels and replaces them when k-means does better; with `force`
 * (placeholder anchors from the hyp key `anchors`) the k-means anchors always replace them.
 */
export async function checkAnchors(
  model: Model,
  items: Item[],
  imgsz: number,
  anchorT: number,
  log: (line: string) => void,
  force = false,
): Promise<void> {
  const info = model.info();
  const anchorsPx = Float64Array.from(
    info.anchors.flatMap((lvl, l) =>
      lvl.flatMap(([w, h]) => [w! * info.stride[l]!, h! * info.stride[l]!]),
    ),
  );
  // Labels at the training size with the augmentation's ±10% scale jitter (seeded).
  const rand = mulberry32(12345);
  const wh = labelSizes(items, imgsz, () => 0.9 + 0.2 * rand());
  const { bpr, aat } = bestPossibleRecall(wh, anchorsPx, anchorT);
  const head = `AutoAnchor: ${aat.toFixed(2)} anchors/target, ${bpr.toFixed(3)} Best Possible Recall (BPR). `;
  if (force) {
    log(`AutoAnchor: computing ${anchorsPx.length / 2} anchors from the labels (hyp anchors)`);
  } else if (bpr > 0.98) {
    log(`${head}Current anchors are a good fit to the data set`);
    return;
  } else log(`${head}Anchors are a poor fit to the data set, computing new ones...`);
  const na = anchorsPx.length / 2;
  const fresh = kmeanAnchors(labelSizes(items, imgsz), na, imgsz, anchorT);
  const newBpr = bestPossibleRecall(wh, fresh, anchorT).bpr;
  if (!force && !(newBpr > bpr)) {
    log(`AutoAnchor: the original anchors stay (new BPR ${newBpr.toFixed(3)} is no better)`);
    return;
  }
  const nl = info.stride.length;
  const perLevel = na / nl;
  const grid = new Float32Array(na * 2);
  for (let i = 0; i < na; i++) {
    const s = info.stride[Math.floor(i / perLevel)]!;
    grid[2 * i] = fresh[2 * i]! / s;
    grid[2 * i + 1] = fresh[2 * i + 1]! / s;
  }
  const name = `model.${model.layerCount - 1}.anchors`;
  await model.loadState([{ name, shape: [nl, perLevel, 2], data: grid }]);
  log(
    `AutoAnchor: new anchors saved to the model (BPR ${newBpr.toFixed(3)}): ${Array.from(fresh, (v) => Math.round(v)).join(',')}`,
  );
}

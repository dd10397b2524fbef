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

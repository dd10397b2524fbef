/**
 * A data set split as training and validation read it: every image checked once (readable,
 * ≥ 10 px, a valid label file) with the result cached, and the reference's rect batch shapes.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DataConfig } from '../config/data';
import { Yolo5Error, fsReason, show } from '../errors';
import { labelPathFor, listImages, readLabels } from './labels';
import { native, type NativeSample } from '../native/addon';
import { cacheRoot, makeDirs } from '../native/paths';

export interface SplitItem {
  file: string;
  width: number;
  height: number;
  labels: number[][];
}

/** The split's images as the native trainer takes them (labels as one flat float32 array each). */
export function toNativeSamples(items: readonly SplitItem[]): NativeSample[] {
  return items.map((it) => ({
    path: it.file,
    width: it.width,
    height: it.height,
    labels: Float32Array.from(it.labels.flat()),
  }));
}

/**
 * What verification found. Every image counts once in items (labelled, `missing` or `empty` by its
 * label file) or in `corrupt` (left out). `restored` counts the kept images among items that were
 * truncated JPEGs (no end-of-image marker; their decodable part is used, the file is not changed).
 */
interface Verified {
  items: SplitItem[];
  missing: number;
  empty: number;
  corrupt: number;
  restored: number;
  warnings: string[];
}

/**
 * Checks every image (readable, ≥ 10 px, at most 178,956,970 pixels) and its label file; bad ones
 * are left out with a warning, truncated JPEGs kept with one.
 */
async function verifySplit(files: string[], nc: number): Promise<Verified> {
  const sizes = await native().imageInfo(files);
  const out: Verified = { items: [], missing: 0, empty: 0, corrupt: 0, restored: 0, warnings: [] };
  files.forEach((file, i) => {
    const size = sizes[i]!;
    if ('error' in size) {
      out.corrupt++;
      out.warnings.push(`${file}: ignoring corrupt image: ${size.error}`);
      return;
    }
    if (size.width < 10 || size.height < 10) {
      out.corrupt++;
      out.warnings.push(
        `${file}: ignoring image smaller than 10 pixels (${size.width}x${size.height})`,
      );
      return;
    }
    try {
      const l = readLabels(labelPathFor(file), nc);
      if (size.restored !== undefined) {
        out.restored++;
        out.warnings.push(`${file}: ${size.restored}`);
      }
      out.warnings.push(...l.warnings);
      if (l.status === 'missing') out.missing++;
      if (l.status === 'empty') out.empty++;
      out.items.push({ file, width: size.width, height: size.height, labels: l.rows });
    } catch (e) {
      if (!(e instanceof Yolo5Error)) throw e;
      out.corrupt++;
      out.warnings.push(`${file}: ignoring corrupt image/label: ${e.message}`);
    }
  });
  return out;
}

/**
 * Label cache: verification results keyed by every image's and label file's path, size and
 * modification time, so a changed file re-verifies. Kept under the user's cache folder
 * (YOLO5_CACHE, else ~/.cache/yolo5), never inside the data set: data folders may be read-only or
 * shared, and nothing is written next to the user's files.
 */
function cacheFile(files: string[], nc: number): string {
  const h = crypto.createHash('sha256');
  // v2: `restored` added; older caches are simply not found.
  h.update(`v2 ${nc}\n`);
  for (const f of files) {
    const l = labelPathFor(f);
    const si = fs.statSync(f, { throwIfNoEntry: false });
    const sl = fs.statSync(l, { throwIfNoEntry: false });
    h.update(`${f}\0${si?.size}:${si?.mtimeMs}\0${sl ? `${sl.size}:${sl.mtimeMs}` : '-'}\n`);
  }
  return path.join(cacheRoot(), 'labels', `${h.digest('hex').slice(0, 32)}.json`);
}

/** A cached verification, or undefined (none yet, or corrupt: then a note says it is rebuilt). */
function readCache(cache: string, log: (line: string) => void): Verified | undefined {
  let text: string;
  try {
    text = fs.readFileSync(cache, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT')
      log(`Label cache ${cache} cannot be read (${fsReason(e)}): verifying again`);
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (isVerified(value)) return value;
  log(`Label cache ${cache} is corrupt: rebuilding it`);
  return undefined;
}

function writeCache(cache: string, v: Verified, log: (line: string) => void): void {
  const tmp = `${cache}.${process.pid}.tmp`;
  try {
    makeDirs(path.dirname(cache), 'label cache folder');
    fs.writeFileSync(tmp, JSON.stringify(v));
    fs.renameSync(tmp, cache);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    log(`WARNING: cannot write the label cache ${cache} (${fsReason(e)})`);
  }
}

const isCount = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0;
const isNumber = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** The cache file's shape, checked in full: a cache is only ever trusted whole. */
function isVerified(value: unknown): value is Verified {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<keyof Verified, unknown>;
  const counts = [v.missing, v.empty, v.corrupt, v.restored];
  if (!counts.every(isCount)) return false;
  if (!Array.isArray(v.warnings) || !v.warnings.every((w) => typeof w === 'string')) return false;
  if (!Array.isArray(v.items)) return false;
  return v.items.every((it: unknown) => {
    if (it === null || typeof it !== 'object') return false;
    const { file, width, height, labels } = it as Record<keyof SplitItem, unknown>;
    return (
      typeof file === 'string' &&
      isCount(width) &&
      isCount(height) &&
      Array.isArray(labels) &&
      labels.every((r: unknown) => Array.isArray(r) && r.length === 5 && r.every(isNumber))
    );
  });
}

/** Reads a split: images with their sizes and labels; unusable images/labels are skipped with a warning. */
export async function loadSplit(
  data: DataConfig,
  task: 'train' | 'val' | 'test',
  log: (line: string) => void,
  singleCls = false,
): Promise<SplitItem[]> {
  const sources = data[task];
  if (!sources)
    throw new Yolo5Error('E_DATA', `${data.file}: no ${show(task)} split`, { file: data.file });
  const files = listImages(sources, `${data.file} ${task}`);
  const cache = cacheFile(files, data.nc);
  let v = readCache(cache, log);
  const cached = v !== undefined;
  if (v === undefined) {
    v = await verifySplit(files, data.nc);
    writeCache(cache, v, log);
  }
  for (const w of v.warnings) log(`WARNING: ${w}`);
  const found = v.items.length - v.missing - v.empty;
  const restored = v.restored > 0 ? `, ${v.restored} corrupt JPEGs restored` : '';
  log(
    `${task}: ${files.length} images, ${found} labelled, ${v.missing} missing labels, ${v.empty} empty, ${v.corrupt} corrupt${restored}${cached ? ' (cached)' : ''}`,
  );
  if (v.items.length === 0)
    throw new Yolo5Error('E_DATA', `${data.file}: no usable images in the ${task} split`);
  return singleCls
    ? v.items.map((it) => ({ ...it, labels: it.labels.map((r) => [0, ...r.slice(1)]) }))
    : v.items;
}

/** Rect batches as the reference forms them: sorted by aspect ratio, shapes rounded to the stride. */
export function rectBatches(
  items: SplitItem[],
  batch: number,
  imgsz: number,
  stride: number,
  pad = 0.5,
) {
  const order = items
    .map((_, i) => i)
    .sort((a, b) => items[a]!.height / items[a]!.width - items[b]!.height / items[b]!.width);
  const batches: { indices: number[]; shape: [number, number] }[] = [];
  for (let s = 0; s < order.length; s += batch) {
    const indices = order.slice(s, s + batch);
    const ars = indices.map((i) => items[i]!.height / items[i]!.width);
    const mini = Math.min(...ars);
    const maxi = Math.max(...ars);
    let shape: [number, number] = [1, 1];
    if (maxi < 1) shape = [maxi, 1];
    else if (mini > 1) shape = [1, 1 / mini];
    batches.push({
      indices,
      shape: [
        Math.ceil((shape[0] * imgsz) / stride + pad) * stride,
        Math.ceil((shape[1] * imgsz) / stride + pad) * stride,
      ],
    });
  }
  return batches;
}

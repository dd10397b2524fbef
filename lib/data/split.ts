/**
 * A data set split as training and validation read it: every image checked once (readable,
 * ≥ 10 px, a valid label file) with the result cached, and the reference's rect batch shapes.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DataConfig } from '../config/data';
import { Yolo5Error, show } from '../errors';
import { labelPathFor, listImages, readLabels } from './labels';
import { native } from '../native/addon';
import { cacheRoot } from '../native/paths';

export interface SplitItem {
  file: string;
  width: number;
  height: number;
  labels: number[][];
}

interface Verified {
  items: SplitItem[];
  missing: number;
  empty: number;
  corrupt: number;
  warnings: string[];
}

/** Checks every image (readable, ≥ 10 px) and its label file; bad ones are left out with a warning. */
async function verifySplit(files: string[], nc: number): Promise<Verified> {
  const sizes = await native().imageInfo(files);
  const out: Verified = { items: [], missing: 0, empty: 0, corrupt: 0, warnings: [] };
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
  h.update(`v1 ${nc}\n`);
  for (const f of files) {
    const l = labelPathFor(f);
    const si = fs.statSync(f, { throwIfNoEntry: false });
    const sl = fs.statSync(l, { throwIfNoEntry: false });
    h.update(`${f}\0${si?.size}:${si?.mtimeMs}\0${sl ? `${sl.size}:${sl.mtimeMs}` : '-'}\n`);
  }
  return path.join(cacheRoot(), 'labels', `${h.digest('hex').slice(0, 32)}.json`);
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
  let v: Verified | undefined;
  let cached = false;
  try {
    v = JSON.parse(fs.readFileSync(cache, 'utf8')) as Verified;
    cached = true;
  } catch {
    v = await verifySplit(files, data.nc);
    try {
      fs.mkdirSync(path.dirname(cache), { recursive: true });
      const tmp = `${cache}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(v));
      fs.renameSync(tmp, cache);
    } catch (e) {
      log(`WARNING: cannot write the label cache ${cache} (${(e as Error).message})`);
    }
  }
  for (const w of v.warnings) log(`WARNING: ${w}`);
  const found = v.items.length - v.missing - v.empty;
  log(
    `${task}: ${files.length} images, ${found} labelled, ${v.missing} missing labels, ${v.empty} empty, ${v.corrupt} corrupt${cached ? ' (cached)' : ''}`,
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

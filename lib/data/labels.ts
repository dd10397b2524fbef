/**
 * Images and labels on disk in the yolov5 layout: images listed by folder, txt list or file;
 * labels found by swapping the last `/images/` for `/labels/`, one row per box.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Yolo5Error, fsReason, show } from '../errors';
import { isImageFile } from './sources';

function walk(dir: string, out: string[]): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (isImageFile(p)) out.push(p);
  }
}

/** The image files of a split: folders (recursive), txt lists (one path a line), sorted. */
export function listImages(sources: string[], what: string): string[] {
  const files: string[] = [];
  for (const src of sources) {
    if (!fs.existsSync(src))
      throw new Yolo5Error('E_DATA', `${what}: ${src} does not exist`, { file: src });
    if (fs.statSync(src).isDirectory()) {
      walk(src, files);
    } else if (src.endsWith('.txt')) {
      const parent = path.dirname(src);
      for (const line of fs.readFileSync(src, 'utf8').split(/\r?\n/)) {
        const t = line.trim();
        if (t === '') continue;
        const p = t.startsWith('./') ? path.join(parent, t.slice(2)) : path.resolve(parent, t);
        if (isImageFile(p)) files.push(p);
      }
    } else if (isImageFile(src)) {
      files.push(src);
    } else {
      throw new Yolo5Error(
        'E_DATA',
        `${what}: ${src} is neither a folder, a .txt list nor an image`,
        { file: src },
      );
    }
  }
  files.sort();
  if (files.length === 0)
    throw new Yolo5Error('E_DATA', `${what}: no images found in ${sources.join(', ')}`);
  return files;
}

/** `…/images/…/x.jpg` → `…/labels/…/x.txt` (the last `/images/` in the path). */
export function labelPathFor(image: string): string {
  const sep = path.sep;
  const marker = `${sep}images${sep}`;
  const i = image.lastIndexOf(marker);
  const swapped =
    i >= 0 ? `${image.slice(0, i)}${sep}labels${sep}${image.slice(i + marker.length)}` : image;
  return swapped.replace(/\.[^./\\]+$/, '.txt');
}

export interface LabelFile {
  /** Rows class, cx, cy, w, h (normalised), duplicates removed. */
  rows: number[][];
  /** missing: no label file (a background image); empty: a file without rows. */
  status: 'ok' | 'missing' | 'empty';
  warnings: string[];
}

/**
 * Reads one label file. A bad row or an unreadable file (a folder) makes the whole file (and its
 * image) unusable: the E_DATA_LABEL error names file and line. Polygon rows (class x1 y1 x2 y2 …)
 * become their bounding boxes.
 */
export function readLabels(file: string, nc: number): LabelFile {
  if (!fs.existsSync(file)) return { rows: [], status: 'missing', warnings: [] };
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    // A folder or an unreadable file in place of a label: that image is skipped, not the run.
    throw new Yolo5Error('E_DATA_LABEL', `${file}: cannot be read: ${fsReason(e)}`, {
      file,
      cause: e,
    });
  }
  const rows: number[][] = [];
  const seen = new Set<string>();
  const warnings: string[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    const t = line.trim();
    if (t === '') return;
    const where = `${file}:${i + 1}`;
    const parts = t.split(/\s+/);
    const values = parts.map(Number);
    const bad = parts.findIndex((p, k) => !Number.isFinite(values[k]!) || p === '');
    if (bad >= 0)
      throw new Yolo5Error('E_DATA_LABEL', `${where}: ${show(parts[bad])} is not a number`, {
        file,
        line: i + 1,
      });
    let row: number[];
    if (values.length === 5) {
      row = values;
    } else if (values.length >= 7 && (values.length - 1) % 2 === 0) {
      const xs = values.slice(1).filter((_, k) => k % 2 === 0);
      const ys = values.slice(1).filter((_, k) => k % 2 === 1);
      const [x1, x2, y1, y2] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
      row = [values[0]!, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1];
    } else {
      throw new Yolo5Error(
        'E_DATA_LABEL',
        `${where}: expected 5 columns (class cx cy w h) but found ${values.length}`,
        { file, line: i + 1 },
      );
    }
    const cls = row[0]!;
    if (!Number.isInteger(cls) || cls < 0 || cls >= nc) {
      throw new Yolo5Error(
        'E_DATA_LABEL',
        `${where}: class ${show(parts[0])} is not an integer in 0…${nc - 1}`,
        {
          file,
          line: i + 1,
        },
      );
    }
    if (row.some((v) => v < 0)) {
      throw new Yolo5Error('E_DATA_LABEL', `${where}: negative value in ${show(t)}`, {
        file,
        line: i + 1,
      });
    }
    if (row.slice(1).some((v) => v > 1)) {
      throw new Yolo5Error(
        'E_DATA_LABEL',
        `${where}: coordinates must be normalised to 0…1, got ${show(t)}`,
        {
          file,
          line: i + 1,
        },
      );
    }
    const key = row.join(' ');
    if (seen.has(key)) {
      warnings.push(`${where}: duplicate row removed`);
      return;
    }
    seen.add(key);
    rows.push(row);
  });
  return { rows, status: rows.length > 0 ? 'ok' : 'empty', warnings };
}

/**
 * Data sets in the yolov5 format: a data yaml (`path`, `train`, `val`, `test`, `nc`, `names`),
 * images listed by folder, txt list or glob, labels found by swapping `/images/` for `/labels/`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readYamlFile } from './config';
import { Yolo5Error, show } from './errors';
import { isImageFile } from './sources';

export interface DataConfig {
  file: string;
  /** Absolute data set root. */
  root: string;
  train?: string[];
  val?: string[];
  test?: string[];
  nc: number;
  names: string[];
}

function dataError(file: string, message: string, value?: unknown): Yolo5Error {
  return new Yolo5Error('E_DATA', `${file}: ${message}`, {
    file,
    ...(value !== undefined ? { value } : {}),
  });
}

/** Reads and checks a data yaml; relative `path` resolves against the yaml's folder, then the cwd. */
export function readDataConfig(file: string): DataConfig {
  if (!fs.existsSync(file))
    throw new Yolo5Error('E_FILE', `Data file ${show(file)} not found`, { file });
  const raw = readYamlFile(file);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw dataError(file, 'a data yaml must be a mapping with path, train, val, names');
  }
  const d = raw as Record<string, unknown>;
  let names: string[];
  if (Array.isArray(d.names)) {
    names = d.names.map(String);
  } else if (typeof d.names === 'object' && d.names !== null) {
    const entries = Object.entries(d.names as Record<string, unknown>);
    const ids = entries.map(([k]) => Number(k));
    if (ids.some((k) => !Number.isInteger(k) || k < 0) || new Set(ids).size !== ids.length) {
      throw dataError(
        file,
        `names keys must be class ids 0, 1, …; got ${show(Object.keys(d.names))}`,
      );
    }
    names = [];
    for (const [k, v] of entries) names[Number(k)] = String(v);
    if (names.some((n) => n === undefined) || names.length !== entries.length) {
      throw dataError(file, `names ids must be 0 … ${entries.length - 1} without gaps`);
    }
  } else if (Number.isInteger(d.nc) && (d.nc as number) > 0) {
    names = Array.from({ length: d.nc as number }, (_, i) => `class${i}`);
  } else {
    throw dataError(file, 'missing names (a list or {id: name})');
  }
  if (d.nc !== undefined && d.nc !== names.length) {
    throw dataError(file, `nc is ${show(d.nc)} but names has ${names.length} entries`, d.nc);
  }
  const dir = path.dirname(path.resolve(file));
  let root = dir;
  if (typeof d.path === 'string' && d.path !== '') {
    const fromYaml = path.resolve(dir, d.path);
    const fromCwd = path.resolve(d.path);
    root =
      path.isAbsolute(d.path) || fs.existsSync(fromYaml) || !fs.existsSync(fromCwd)
        ? fromYaml
        : fromCwd;
  }
  const split = (key: 'train' | 'val' | 'test'): string[] | undefined => {
    const v = d[key];
    if (v === undefined || v === null || v === '') return undefined;
    const items = Array.isArray(v) ? v : [v];
    if (!items.every((x) => typeof x === 'string'))
      throw dataError(file, `${key} must be a path or a list of paths`, v);
    return (items as string[]).map((x) => path.resolve(root, x));
  };
  const out: DataConfig = { file: path.resolve(file), root, nc: names.length, names };
  for (const key of ['train', 'val', 'test'] as const) {
    const s = split(key);
    if (s) out[key] = s;
  }
  return out;
}

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
 * Reads one label file. A bad row makes the whole file (and its image) unusable: the error names
 * file and line. Polygon rows (class x1 y1 x2 y2 …) become their bounding boxes.
 */
export function readLabels(file: string, nc: number): LabelFile {
  if (!fs.existsSync(file)) return { rows: [], status: 'missing', warnings: [] };
  const text = fs.readFileSync(file, 'utf8');
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

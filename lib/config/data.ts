/**
 * The data yaml in the yolov5 format: `path`, `train`, `val`, `test`, `nc`, `names`; split paths
 * resolve against `path`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readYamlFile } from './model';
import { Yolo5Error, notDownloadedHint, show } from '../errors';

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
    throw new Yolo5Error(
      'E_FILE',
      `Data file ${show(file)} not found. ${notDownloadedHint('data')}`,
      {
        file,
      },
    );
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

/**
 * Model configs in the yolov5 yaml format: read, check row by row, and resolve into the layer
 * list the native builder takes (channels rounded, depth applied, args filled in) — the same
 * arithmetic as the reference's model parser, so names and shapes come out identical.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { Yolo5Error, show } from '../errors';
import type { NativeArg, NativeLayerSpec, NativeModelSpec } from '../native/addon';
import { modelsDir } from '../native/paths';

export type YamlRow = [from: number | number[], number: number, module: string, args: unknown[]];

/** A model config as written in the yaml file. */
export interface ModelConfig {
  nc: number;
  depth_multiple: number;
  width_multiple: number;
  anchors: number[][] | number;
  backbone: YamlRow[];
  head: YamlRow[];
  activation?: string;
  ch?: number;
  [key: string]: unknown;
}

/** Where a config came from, for messages: a file and the line of each row when known. */
export interface ConfigSource {
  file: string;
  rowLines?: number[];
}

/** Modules whose first arg is an output channel count (scaled by width_multiple). */
const CONV_LIKE = new Set([
  'Conv',
  'GhostConv',
  'Bottleneck',
  'GhostBottleneck',
  'SPP',
  'SPPF',
  'DWConv',
  'Focus',
  'CrossConv',
  'BottleneckCSP',
  'C3',
  'C3Ghost',
  'C3x',
]);
/** Modules that take the repeat count as their third arg and are built once. */
const REPEAT_INSIDE = new Set(['BottleneckCSP', 'C3', 'C3Ghost', 'C3x']);
/** Positional args each module accepts after resolution: [min, max]. */
const ARG_COUNTS: Record<string, [number, number]> = {
  Conv: [2, 8], // c1, c2, k, s, p, g, d, act
  DWConv: [2, 6], // c1, c2, k, s, d, act
  Focus: [2, 7], // c1, c2, k, s, p, g, act
  GhostConv: [2, 6], // c1, c2, k, s, g, act
  Bottleneck: [2, 5], // c1, c2, shortcut, g, e
  CrossConv: [2, 7], // c1, c2, k, s, g, e, shortcut
  GhostBottleneck: [2, 4], // c1, c2, k, s
  C3: [3, 6], // c1, c2, n, shortcut, g, e
  C3x: [3, 6],
  C3Ghost: [3, 6],
  BottleneckCSP: [3, 6],
  SPP: [2, 3], // c1, c2, k
  SPPF: [2, 3], // c1, c2, k
  Concat: [0, 1], // dimension
  'nn.Upsample': [0, 3], // size, scale_factor, mode
  'nn.Identity': [0, 0],
  Detect: [3, 3], // nc, anchors, channels
};
const ALIASES: Record<string, string> = { Upsample: 'nn.Upsample', Identity: 'nn.Identity' };
const ACTIVATIONS = new Set(['SiLU', 'ReLU', 'LeakyReLU', 'Hardswish', 'Sigmoid', 'Identity']);

export const SUPPORTED_MODULES = Object.keys(ARG_COUNTS);

/** Finds a config by path, or by the name of a bundled one (`yolov5s`, `yolov5s.yaml`). */
export function resolveConfigPath(cfg: string): string {
  if (fs.existsSync(cfg)) return path.resolve(cfg);
  const base = cfg.endsWith('.yaml') || cfg.endsWith('.yml') ? cfg : `${cfg}.yaml`;
  const bundled = path.join(modelsDir(), path.basename(base));
  if (path.basename(base) === base && fs.existsSync(bundled)) return bundled;
  const names = fs
    .readdirSync(modelsDir())
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.replace(/\.yaml$/, ''));
  throw new Yolo5Error(
    'E_FILE',
    `Model config ${show(cfg)} not found (neither a file nor a bundled config: ${names.join(', ')})`,
    { file: cfg },
  );
}

/** Reads a yaml file into a plain value, with the file and line in any parse error. */
export function readYamlFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Yolo5Error('E_FILE', `Cannot read ${file}: ${(e as Error).message}`, {
      file,
      cause: e,
    });
  }
  try {
    return yaml.load(text, { filename: file });
  } catch (e) {
    const mark = (e as { mark?: { line?: number } }).mark;
    const line = mark?.line !== undefined ? mark.line + 1 : undefined;
    const reason = (e as { reason?: string }).reason ?? (e as Error).message;
    throw new Yolo5Error('E_YAML', `${file}${line ? `:${line}` : ''}: not valid yaml (${reason})`, {
      file,
      ...(line !== undefined ? { line } : {}),
      cause: e,
    });
  }
}

/** Reads and checks a model config file (or bundled config name). */
export function readModelConfig(cfg: string): { config: ModelConfig; source: ConfigSource } {
  const file = resolveConfigPath(cfg);
  const value = readYamlFile(file);
  const source: ConfigSource = { file, rowLines: rowLines(fs.readFileSync(file, 'utf8')) };
  return { config: checkModelConfig(value, source), source };
}

/** Best-effort line numbers of the `[from, number, module, args]` rows, in backbone+head order. */
function rowLines(text: string): number[] | undefined {
  const lines = text.split(/\r?\n/);
  const out: number[] = [];
  let inRows = false;
  lines.forEach((line, i) => {
    const bare = line.replace(/#.*$/, '');
    if (/^(backbone|head)\s*:/.test(bare)) inRows = true;
    else if (/^\S/.test(bare)) inRows = false;
    if (!inRows) return;
    // A row starts with '[' (or '- [') followed by its from value, e.g. "[[-1, 6], 1, Concat".
    const body = bare.replace(/^(backbone|head)\s*:\s*/, '');
    const m = /^\s*(?:-\s*)?\[+\s*(?:-?\d+|\[)/.exec(body);
    if (m && /\w+\s*,\s*\[/.test(body)) out.push(i + 1);
  });
  return out.length > 0 ? out : undefined;
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

function where(source: ConfigSource, row?: number): string {
  const line = row !== undefined ? source.rowLines?.[row] : undefined;
  return `${source.file}${line !== undefined ? `:${line}` : ''}`;
}

function cfgError(
  source: ConfigSource,
  row: number | undefined,
  message: string,
  value?: unknown,
): Yolo5Error {
  const line = row !== undefined ? source.rowLines?.[row] : undefined;
  const rowText = row !== undefined ? ` row ${row} (model.${row})` : '';
  return new Yolo5Error('E_MODEL_CFG', `${where(source, row)}:${rowText} ${message}`, {
    file: source.file,
    ...(row !== undefined ? { row } : {}),
    ...(line !== undefined ? { line } : {}),
    ...(value !== undefined ? { value } : {}),
  });
}

/** Checks the shape of a parsed config; every problem names the file and row. */
export function checkModelConfig(value: unknown, source: ConfigSource): ModelConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw cfgError(
      source,
      undefined,
      'a model config must be a yaml mapping with nc, anchors, backbone, head',
    );
  }
  const c = value as Record<string, unknown>;
  for (const key of ['nc', 'depth_multiple', 'width_multiple', 'anchors', 'backbone', 'head']) {
    if (!(key in c)) throw cfgError(source, undefined, `missing key ${show(key)}`);
  }
  if (!isInt(c.nc) || c.nc < 1)
    throw cfgError(source, undefined, `nc must be an integer >= 1, got ${show(c.nc)}`, c.nc);
  for (const key of ['depth_multiple', 'width_multiple']) {
    const v = c[key];
    if (typeof v !== 'number' || !(v > 0))
      throw cfgError(source, undefined, `${key} must be a number > 0, got ${show(v)}`, v);
  }
  if (c.ch !== undefined && (!isInt(c.ch) || c.ch < 1)) {
    throw cfgError(source, undefined, `ch must be an integer >= 1, got ${show(c.ch)}`, c.ch);
  }
  const anchors = c.anchors;
  if (isInt(anchors)) {
    if (anchors < 1)
      throw cfgError(source, undefined, `anchors must be >= 1, got ${anchors}`, anchors);
  } else if (
    !Array.isArray(anchors) ||
    anchors.length === 0 ||
    !anchors.every(
      (lvl) =>
        Array.isArray(lvl) &&
        lvl.length > 0 &&
        lvl.length % 2 === 0 &&
        lvl.length === (anchors[0] as unknown[]).length &&
        lvl.every((v) => typeof v === 'number' && v > 0),
    )
  ) {
    throw cfgError(
      source,
      undefined,
      `anchors must be an integer or a list of levels, each the same even number of positive w,h values; got ${show(anchors)}`,
      anchors,
    );
  }
  if (c.activation !== undefined) parseActivation(c.activation, source);
  const rows: unknown[] = [];
  for (const key of ['backbone', 'head']) {
    const part = c[key];
    if (!Array.isArray(part))
      throw cfgError(source, undefined, `${key} must be a list of rows`, part);
    rows.push(...part);
  }
  rows.forEach((r, i) => {
    if (!Array.isArray(r) || r.length !== 4) {
      throw cfgError(source, i, `must be [from, number, module, args], got ${show(r)}`, r);
    }
    const [from, n, m, args] = r as unknown[];
    const froms = Array.isArray(from) ? from : [from];
    if (froms.length === 0 || !froms.every(isInt)) {
      throw cfgError(
        source,
        i,
        `from must be an integer or a list of integers, got ${show(from)}`,
        from,
      );
    }
    if (!isInt(n) || n < 1)
      throw cfgError(source, i, `number must be an integer >= 1, got ${show(n)}`, n);
    if (typeof m !== 'string')
      throw cfgError(source, i, `module must be a name, got ${show(m)}`, m);
    if (!Array.isArray(args))
      throw cfgError(source, i, `args must be a list, got ${show(args)}`, args);
  });
  return c as unknown as ModelConfig;
}

function parseActivation(value: unknown, source: ConfigSource): { kind: string; slope?: number } {
  const text = typeof value === 'string' ? value.trim() : '';
  const m = /^(?:nn\.)?(\w+)\s*(?:\(\s*([^)]*)\))?$/.exec(text);
  if (!m || !ACTIVATIONS.has(m[1]!)) {
    throw cfgError(
      source,
      undefined,
      `activation must be one of ${[...ACTIVATIONS].map((a) => `nn.${a}()`).join(', ')}, got ${show(value)}`,
      value,
    );
  }
  const kind = m[1]!;
  if (kind === 'LeakyReLU') {
    const arg = (m[2] ?? '')
      .split(',')[0]!
      .replace(/^negative_slope\s*=\s*/, '')
      .trim();
    const slope = arg === '' ? 0.01 : Number(arg);
    if (!Number.isFinite(slope))
      throw cfgError(source, undefined, `LeakyReLU slope must be a number, got ${show(arg)}`);
    return { kind, slope };
  }
  return { kind };
}

/** Python's round(): halves go to the even neighbour. */
function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function makeDivisible(x: number, divisor: number): number {
  return Math.ceil(x / divisor) * divisor;
}

export interface ResolveOptions {
  /** Overrides the config's nc. */
  nc?: number;
  /** Input channels (default: the config's `ch`, else 3). */
  ch?: number;
}

export interface ResolvedModel {
  spec: NativeModelSpec;
  nc: number;
  /** Output channels of each layer, for messages and checks. */
  channels: number[];
}

/** Resolves a checked config into the native builder's input. */
export function resolveModel(
  config: ModelConfig,
  source: ConfigSource,
  opts: ResolveOptions = {},
): ResolvedModel {
  const nc = opts.nc ?? config.nc;
  if (!isInt(nc) || nc < 1)
    throw new Yolo5Error('E_ARG', `Expected integer >= 1 for nc but received ${show(nc)}`);
  const inChannels = opts.ch ?? config.ch ?? 3;
  const gd = config.depth_multiple;
  const gw = config.width_multiple;
  const anchors = config.anchors;
  const na = Array.isArray(anchors) ? anchors[0]!.length / 2 : anchors;
  const no = na * (nc + 5);
  const rows = [...config.backbone, ...config.head];
  const channels: number[] = [];
  const layers: NativeLayerSpec[] = [];

  rows.forEach((row, i) => {
    const [fromRaw, nRaw, moduleRaw, argsRaw] = row;
    const module = ALIASES[moduleRaw] ?? moduleRaw;
    if (!(module in ARG_COUNTS)) {
      throw cfgError(
        source,
        i,
        `unknown module ${show(moduleRaw)} (supported: ${SUPPORTED_MODULES.join(', ')})`,
        moduleRaw,
      );
    }
    if (module === 'Detect' && i !== rows.length - 1)
      throw cfgError(source, i, 'Detect must be the last row');
    if (module !== 'Detect' && i === rows.length - 1) {
      throw cfgError(source, i, `the last row must be Detect, got ${show(moduleRaw)}`, moduleRaw);
    }
    // Relative negative indices count back from this row; -1 stays "previous layer".
    const from = (Array.isArray(fromRaw) ? fromRaw : [fromRaw]).map((f) => {
      const abs = f === -1 ? -1 : f < 0 ? i + f : f;
      if (abs === -1 ? false : abs < 0 || abs >= i) {
        throw cfgError(
          source,
          i,
          `from index ${f} is out of range (layers 0..${i - 1} come before this row)`,
          f,
        );
      }
      return abs;
    });
    const chOf = (f: number): number =>
      f === -1 ? (i === 0 ? inChannels : channels[i - 1]!) : channels[f]!;
    const args: NativeArg[] = argsRaw.map((a, k) => resolveArg(a, nc, anchors, source, i, k));
    let n = nRaw > 1 ? Math.max(pyRound(nRaw * gd), 1) : nRaw;
    let c2: number;
    if (CONV_LIKE.has(module)) {
      if (from.length !== 1)
        throw cfgError(source, i, `${module} takes one input, got from ${show(fromRaw)}`);
      const out = args[0];
      if (!isInt(out) || out < 1) {
        throw cfgError(
          source,
          i,
          `${module} needs its output channels as the first arg, got ${show(argsRaw[0])}`,
          argsRaw[0],
        );
      }
      c2 = out !== no ? makeDivisible(out * gw, 8) : out;
      args.splice(0, 1, chOf(from[0]!), c2);
      if (REPEAT_INSIDE.has(module)) {
        args.splice(2, 0, n);
        n = 1;
      }
    } else if (module === 'Concat') {
      c2 = from.reduce((s, f) => s + chOf(f), 0);
    } else if (module === 'Detect') {
      if (args.length !== 2) {
        throw cfgError(
          source,
          i,
          `Detect takes [nc, anchors], got ${argsRaw.length} args`,
          argsRaw,
        );
      }
      let levels = args[1];
      if (isInt(levels))
        levels = Array.from({ length: from.length }, () =>
          Array.from({ length: (levels as number) * 2 }, (_, j) => j),
        );
      if (!Array.isArray(levels) || levels.length !== from.length) {
        throw cfgError(
          source,
          i,
          `Detect has ${from.length} inputs but ${Array.isArray(levels) ? levels.length : show(levels)} anchor levels`,
        );
      }
      args[1] = levels; // an anchor count becomes placeholder anchors for autoanchor to fill
      args.push(from.map(chOf));
      c2 = no;
    } else {
      if (from.length !== 1)
        throw cfgError(source, i, `${module} takes one input, got from ${show(fromRaw)}`);
      c2 = chOf(from[0]!);
    }
    const [min, max] = ARG_COUNTS[module]!;
    if (args.length < min || args.length > max) {
      throw cfgError(
        source,
        i,
        `${module} takes ${min === max ? min : `${min}..${max}`} args after channel resolution, got ${args.length} (${show(argsRaw)})`,
        argsRaw,
      );
    }
    if (!(c2 > 0)) throw cfgError(source, i, `${module} would have ${c2} output channels`);
    channels.push(c2);
    layers.push({ from, module, repeats: n, args });
  });

  const activation =
    config.activation !== undefined ? parseActivation(config.activation, source) : { kind: 'SiLU' };
  return { spec: { inChannels, activation, layers }, nc, channels };
}

function resolveArg(
  a: unknown,
  nc: number,
  anchors: ModelConfig['anchors'],
  source: ConfigSource,
  row: number,
  k: number,
): NativeArg {
  if (a === 'nc') return nc;
  if (a === 'anchors') return anchors as NativeArg;
  if (a === 'None' || a === null) return null;
  if (typeof a === 'number') {
    if (!Number.isFinite(a))
      throw cfgError(source, row, `arg ${k} must be finite, got ${show(a)}`, a);
    return a;
  }
  if (typeof a === 'boolean' || typeof a === 'string') return a;
  if (Array.isArray(a)) return a.map((x, j) => resolveArg(x, nc, anchors, source, row, j));
  throw cfgError(source, row, `arg ${k} has an unsupported value ${show(a)}`, a);
}

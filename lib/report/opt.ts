/**
 * opt.yaml in the reference's shape: its argparse options under their snake_case names (the
 * reference's train.py --resume reads them back), yolo5's own options after them, also in
 * snake_case. Reading takes either that shape or the camelCase options older yolo5 runs saved.
 */

/** TrainOptions name → the reference's option name, where the two differ beyond snake_case. */
const RENAMED: Readonly<Record<string, string>> = { batch: 'batch_size' };

/** The reference's options (v7.0 train.py) in its order, with the values it saves by default. */
const REFERENCE_DEFAULTS: Readonly<Record<string, unknown>> = {
  weights: '',
  cfg: '',
  data: '',
  hyp: {},
  epochs: 100,
  batch_size: 16,
  imgsz: 640,
  rect: false,
  resume: false,
  nosave: false,
  noval: false,
  noautoanchor: false,
  noplots: false,
  evolve: null,
  bucket: '',
  cache: null,
  image_weights: false,
  device: '',
  multi_scale: false,
  single_cls: false,
  optimizer: 'SGD',
  sync_bn: false,
  workers: 8,
  project: 'runs/train',
  name: 'exp',
  exist_ok: false,
  quad: false,
  cos_lr: false,
  label_smoothing: 0,
  patience: 100,
  freeze: [0],
  save_period: -1,
  seed: 0,
  local_rank: -1,
  entity: null,
  upload_dataset: false,
  bbox_interval: -1,
  artifact_alias: 'latest',
  save_dir: '',
};

/** Reference options yolo5 has no use for when reading a file back (or derives otherwise). */
const IGNORED_ON_READ = new Set([
  'resume',
  'evolve',
  'bucket',
  'sync_bn',
  'quad',
  'save_period',
  'local_rank',
  'entity',
  'upload_dataset',
  'bbox_interval',
  'artifact_alias',
  'save_dir',
]);

/** Options that live elsewhere at run time and are never saved. */
const NOT_SAVED = new Set(['signal', 'log', 'hyp', 'resume']);

export function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export function camelCase(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** `--freeze` as the reference writes it: [N] counts layers, two or more values list them. */
export function freezeToReference(spec: unknown): unknown[] {
  if (spec === undefined || spec === null) return [0];
  if (typeof spec === 'number' || typeof spec === 'string') return [spec];
  const list = spec as unknown[];
  // One layer index alone would read as a count: the reference lists it twice.
  if (list.length === 1 && typeof list[0] === 'number') return [list[0], list[0]];
  return [...list];
}

export function freezeFromReference(value: unknown): unknown {
  if (!Array.isArray(value)) return value === 0 ? undefined : value;
  if (value.length === 0 || (value.length === 1 && value[0] === 0)) return undefined;
  if (value.length === 1) return value[0];
  const unique = [...new Set(value)];
  return unique.length === 1 && typeof unique[0] === 'number' ? [unique[0]] : unique;
}

export interface ReferenceOptExtras {
  /** The hyperparameters in use (the reference saves the dict). */
  hyp: object;
  saveDir: string;
}

/**
 * Training options (camelCase, as TrainOptions) → the reference's opt dict: every reference key
 * in its order, then yolo5's own options snake_cased. Undefined values are left out.
 */
export function toReferenceOpt(
  opts: Readonly<Record<string, unknown>>,
  extras: ReferenceOptExtras,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...REFERENCE_DEFAULTS };
  const own: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(opts)) {
    if (value === undefined || NOT_SAVED.has(key)) continue;
    const name = RENAMED[key] ?? snakeCase(key);
    if (name in REFERENCE_DEFAULTS) out[name] = value;
    else own[name] = value;
  }
  out['hyp'] = { ...extras.hyp };
  out['freeze'] = freezeToReference(opts['freeze']);
  out['cache'] = opts['cache'] === true ? 'ram' : opts['cache'] === false ? null : out['cache'];
  out['device'] = opts['device'] === undefined ? '' : String(opts['device']);
  out['resume'] = opts['resume'] ?? false;
  out['save_dir'] = extras.saveDir;
  // Plain data only (no class instances or functions) so yaml and pickles take it as it is.
  return JSON.parse(JSON.stringify({ ...out, ...own })) as Record<string, unknown>;
}

function deviceFromReference(value: unknown): unknown {
  if (value === '' || value === null || value === undefined) return undefined;
  if (typeof value === 'string' && /^\d+$/.test(value.trim())) return Number(value);
  return value;
}

/**
 * Saved options → TrainOptions fields (camelCase): the reference's shape (has `batch_size` or
 * `save_dir`) is translated; the camelCase options yolo5 saved before are returned as they are.
 * The `hyp` dict is returned too; `resume` never is (the caller decides it).
 */
export function optionsFromSaved(
  saved: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const reference = 'batch_size' in saved || 'save_dir' in saved;
  if (!reference) {
    const out = { ...saved };
    delete out['resume'];
    return out;
  }
  const out: Record<string, unknown> = {};
  const renamedBack = Object.fromEntries(Object.entries(RENAMED).map(([a, b]) => [b, a]));
  for (const [key, value] of Object.entries(saved)) {
    if (IGNORED_ON_READ.has(key) || value === undefined) continue;
    out[renamedBack[key] ?? camelCase(key)] = value;
  }
  for (const key of ['weights', 'cfg', 'data']) if (out[key] === '') delete out[key];
  const hyp = out['hyp'];
  if (hyp === null || (typeof hyp === 'object' && Object.keys(hyp).length === 0)) delete out['hyp'];
  const freeze = freezeFromReference(saved['freeze']);
  if (freeze === undefined) delete out['freeze'];
  else out['freeze'] = freeze;
  if ('cache' in saved) out['cache'] = saved['cache'] !== null && saved['cache'] !== false;
  const device = deviceFromReference(saved['device']);
  if (device === undefined) delete out['device'];
  else out['device'] = device;
  return out;
}

/// <reference types="node" preserve="true" />
/**
 * Hyperparameter evolution (`yolo5 train --evolve`): a genetic search over the hyp keys. Each
 * generation picks a parent among the best earlier results, mutates it, trains a short run with
 * it in-process and appends its metrics and hyps to `evolve.csv`; `hyp_evolve.yaml` holds the
 * best row so far. A run folder continues where it stopped (`resumeEvolve`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { readYamlFile } from '../config/model';
import { Yolo5Error, show } from '../errors';
import { readHyp, type Hyp, type HypKey } from '../config/hyp';
import {
  EVOLVE_DEFAULTS,
  EVOLVE_PARENTS,
  TRAIN_DEFAULTS,
  checkChoice,
  checkInteger,
  type EvolveParent,
} from '../options';
import { removeStaleTemporaries, writeTextAtomic as writeAtomic } from '../report/files';
import { plotEvolve } from '../report/plots';
import { Run } from './run';
import { gaussian, mulberry32 } from './random';
import { makeRunDir } from '../report/runs';
import {
  train,
  type BatchEvent,
  type EpochEvent,
  type EpochRecord,
  type TrainOptions,
  type TrainResult,
} from './train';

export type EvolveKey = HypKey | 'anchors';

/** Per key: mutation gain (0: never mutated), lower and upper limit (the reference's values). */
export const EVOLVE_META: Readonly<Record<EvolveKey, readonly [number, number, number]>> = {
  lr0: [1, 1e-5, 0.1],
  lrf: [1, 0.01, 1.0],
  momentum: [0.3, 0.6, 0.98],
  weight_decay: [1, 0, 0.001],
  warmup_epochs: [1, 0, 5],
  warmup_momentum: [1, 0, 0.95],
  warmup_bias_lr: [1, 0, 0.2],
  box: [1, 0.02, 0.2],
  cls: [1, 0.2, 4.0],
  cls_pw: [1, 0.5, 2.0],
  obj: [1, 0.2, 4.0],
  obj_pw: [1, 0.5, 2.0],
  iou_t: [0, 0.1, 0.7],
  anchor_t: [1, 2.0, 8.0],
  anchors: [2, 2.0, 10.0],
  fl_gamma: [0, 0, 2.0],
  hsv_h: [1, 0, 0.1],
  hsv_s: [1, 0, 0.9],
  hsv_v: [1, 0, 0.9],
  degrees: [1, 0, 45],
  translate: [1, 0, 0.9],
  scale: [1, 0, 0.9],
  shear: [1, 0, 10],
  perspective: [0, 0, 0.001],
  flipud: [1, 0, 1],
  fliplr: [0, 0, 1],
  mosaic: [1, 0, 1],
  mixup: [1, 0, 1],
  copy_paste: [1, 0, 1],
};

/** The result columns of evolve.csv, before the hyp keys. */
export const EVOLVE_RESULT_COLUMNS = [
  'metrics/precision',
  'metrics/recall',
  'metrics/mAP_0.5',
  'metrics/mAP_0.5:0.95',
  'val/box_loss',
  'val/obj_loss',
  'val/cls_loss',
] as const;

/** Mutation probability per key and the mutation's sigma. */
export const MUTATION_PROBABILITY = 0.8;
export const MUTATION_SIGMA = 0.2;
/** Parents are chosen among this many best rows. */
export const PARENT_POOL = 5;

export type EvolveHyp = Partial<Record<EvolveKey, number>>;

/** One row of evolve.csv. */
export interface EvolveRow {
  /** 1-based: the row's position in evolve.csv. */
  generation: number;
  precision: number;
  recall: number;
  mAP50: number;
  mAP50_95: number;
  valLoss: [number, number, number];
  /** 0.1·mAP50 + 0.9·mAP50-95. */
  fitness: number;
  hyp: EvolveHyp;
}

/** A generation trained by this call. */
export interface EvolveGeneration extends EvolveRow {
  status: TrainResult['status'];
  /** The generation's training folder (results.csv, hyp.yaml, opt.yaml; no weights). */
  saveDir: string;
  /** Frozen parameter tensors and trainable parameters of its model. */
  frozen: number;
  trainableParameters: number;
  seconds: number;
}

export interface EvolveOptions extends TrainOptions {
  /** Generations in total, counting the rows already in evolve.csv (default 300). */
  generations?: number;
  /** 'single' (default): one of the best rows, drawn by fitness; 'weighted': their weighted mean. */
  parent?: EvolveParent;
  /**
   * Continue the evolution in this folder: its options (evolve_opt.yaml) and evolve.csv are used;
   * `generations`, `threads`, `workers`, `signal` and `log` may be given anew.
   */
  resumeEvolve?: string;
}

export interface EvolveResult {
  status: 'completed' | 'aborted';
  dir: string;
  csv: string;
  /** hyp_evolve.yaml: the best row's hyps (absent when no generation finished). */
  hypFile: string;
  keys: EvolveKey[];
  /** Every row of evolve.csv, this call's included. */
  rows: EvolveRow[];
  best?: EvolveRow;
  /** The generations this call trained. */
  trained: EvolveGeneration[];
}

export interface EvolveBatchEvent extends BatchEvent {
  generation: number;
}
export interface EvolveEpochEvent extends EpochEvent {
  generation: number;
}

/** What an evolution emits: `run.on('generation', (g) => …)`. */
export type EvolveEvents = {
  generation: [EvolveGeneration];
  epoch: [EvolveEpochEvent];
  batch: [EvolveBatchEvent];
  log: [string];
};

/** A running evolution: a Promise of the result and an emitter of EvolveEvents. */
export class EvolveRun extends Run<EvolveResult, EvolveEvents> {}

/** The reference's fitness: 0.1·mAP50 + 0.9·mAP50-95. */
export function evolveFitness(m: { mAP50: number; mAP50_95: number }): number {
  return 0.1 * m.mAP50 + 0.9 * m.mAP50_95;
}

function round5(x: number): number {
  return Math.round(x * 1e5) / 1e5;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(Math.max(x, lo), hi);
}

export interface MutateOptions {
  probability?: number;
  sigma?: number;
}

/**
 * Mutates `parent` on `keys`: factors v = clip(gain · [u < p] · z · r · sigma + 1, 0.3, 3) with a
 * uniform u and a normal z per key and one uniform r per draw, drawn again until some factor is
 * not 1; then each key is parent · v, clipped to its limits and rounded to 5 decimals. Keys not in
 * `keys` are copied.
 */
export function mutateHyp(
  parent: EvolveHyp,
  keys: readonly EvolveKey[],
  rand: () => number,
  opts: MutateOptions = {},
): EvolveHyp {
  const p = opts.probability ?? MUTATION_PROBABILITY;
  const sigma = opts.sigma ?? MUTATION_SIGMA;
  for (const k of keys) {
    if (!(k in EVOLVE_META)) throw new Yolo5Error('E_ARG', `unknown hyperparameter ${show(k)}`);
    if (typeof parent[k] !== 'number')
      throw new Yolo5Error('E_ARG', `the parent hyp has no value for ${k}`);
  }
  const gains = keys.map((k) => EVOLVE_META[k][0]);
  if (!gains.some((g) => g > 0) || !(p > 0) || !(sigma > 0)) {
    throw new Yolo5Error('E_ARG', `nothing to mutate: every key in ${keys.join(', ')} has gain 0`);
  }
  let v: number[] = gains.map(() => 1);
  while (v.every((x) => x === 1)) {
    const r = rand();
    v = gains.map((g) => {
      const on = rand() < p ? 1 : 0;
      const z = gaussian(rand);
      return clamp(g * on * z * r * sigma + 1, 0.3, 3.0);
    });
  }
  const out: EvolveHyp = { ...parent };
  keys.forEach((k, i) => {
    const [, lo, hi] = EVOLVE_META[k];
    out[k] = round5(clamp(parent[k]! * v[i]!, lo, hi));
  });
  return out;
}

/**
 * The parent of the next generation from the best min(5, rows) rows by fitness, weighted by
 * fitness − min + 1e-6: one of them drawn ('single') or their weighted mean ('weighted').
 */
export function selectParent(
  rows: readonly EvolveRow[],
  keys: readonly EvolveKey[],
  mode: 'single' | 'weighted',
  rand: () => number,
): EvolveHyp {
  if (rows.length === 0) throw new Yolo5Error('E_ARG', 'selectParent needs at least one row');
  const top = [...rows].sort((a, b) => b.fitness - a.fitness).slice(0, PARENT_POOL);
  const min = Math.min(...top.map((r) => r.fitness));
  const w = top.map((r) => r.fitness - min + 1e-6);
  const total = w.reduce((a, b) => a + b, 0);
  if (mode === 'single') {
    let u = rand() * total;
    for (let i = 0; i < top.length; i++) {
      u -= w[i]!;
      if (u < 0) return { ...top[i]!.hyp };
    }
    return { ...top[top.length - 1]!.hyp };
  }
  const out: EvolveHyp = {};
  for (const k of keys) out[k] = top.reduce((s, r, i) => s + r.hyp[k]! * w[i]!, 0) / total;
  return out;
}

/** The keys a run evolves: all of EVOLVE_META; `anchors` only with autoanchor. */
export function evolveKeys(noautoanchor: boolean): EvolveKey[] {
  return (Object.keys(EVOLVE_META) as EvolveKey[]).filter((k) => k !== 'anchors' || !noautoanchor);
}

function formatNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
}

function csvHeader(keys: readonly EvolveKey[]): string {
  return [...EVOLVE_RESULT_COLUMNS, ...keys].join(',');
}

function csvLine(row: EvolveRow, keys: readonly EvolveKey[]): string {
  return [
    row.precision,
    row.recall,
    row.mAP50,
    row.mAP50_95,
    ...row.valLoss,
    ...keys.map((k) => row.hyp[k]!),
  ]
    .map(formatNumber)
    .join(',');
}

/** Reads evolve.csv; its header must be the result columns and then exactly `keys`. */
export function readEvolveCsv(file: string, keys: readonly EvolveKey[]): EvolveRow[] {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/);
  const header = lines[0]!.split(',').map((s) => s.trim());
  const expected = csvHeader(keys);
  if (header.join(',') !== expected) {
    throw new Yolo5Error(
      'E_EVOLVE',
      `${file}:1: expected the header ${expected} but found ${lines[0]!}`,
      { file, line: 1 },
    );
  }
  const rows: EvolveRow[] = [];
  for (let i = 1; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (text === '') continue;
    const cells = text.split(',');
    const values = cells.map((c) => Number(c.trim()));
    const bad = values.findIndex((v, j) => cells[j]!.trim() === '' || !Number.isFinite(v));
    if (cells.length !== header.length || bad >= 0) {
      throw new Yolo5Error(
        'E_EVOLVE',
        cells.length !== header.length
          ? `${file}:${i + 1}: expected ${header.length} values but found ${cells.length}`
          : `${file}:${i + 1}: expected a number for ${header[bad]} but found ${show(cells[bad])}`,
        { file, line: i + 1 },
      );
    }
    const [precision, recall, mAP50, mAP50_95, vb, vo, vc] = values as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const hyp: EvolveHyp = {};
    keys.forEach((k, j) => (hyp[k] = values[EVOLVE_RESULT_COLUMNS.length + j]!));
    rows.push({
      generation: rows.length + 1,
      precision,
      recall,
      mAP50,
      mAP50_95,
      valLoss: [vb, vo, vc],
      fitness: evolveFitness({ mAP50, mAP50_95 }),
      hyp,
    });
  }
  return rows;
}

function bestRow(rows: readonly EvolveRow[]): EvolveRow | undefined {
  // The earliest of equal rows wins, so a tie keeps the row already reported.
  return rows.reduce<EvolveRow | undefined>(
    (b, r) => (!b || r.fitness > b.fitness ? r : b),
    undefined,
  );
}

function hypYaml(best: EvolveRow, total: number, keys: readonly EvolveKey[], file: string): string {
  const m = (v: number) => v.toFixed(5);
  const head = [
    `# yolo5 hyperparameter evolution: the best of ${total} generation${total === 1 ? '' : 's'}`,
    `# Best generation ${best.generation}: fitness ${m(best.fitness)} (0.1 mAP50 + 0.9 mAP50-95)`,
    `# P ${m(best.precision)}, R ${m(best.recall)}, mAP50 ${m(best.mAP50)}, mAP50-95 ${m(best.mAP50_95)}, ` +
      `val losses box ${m(best.valLoss[0])} obj ${m(best.valLoss[1])} cls ${m(best.valLoss[2])}`,
    `# Train with: yolo5 train --hyp ${file}`,
  ];
  const values: Record<string, number> = {};
  for (const k of keys) values[k] = best.hyp[k]!;
  return `${head.join('\n')}\n${yaml.dump(values)}`;
}

const OPT_FILE = 'evolve_opt.yaml';

interface SavedEvolve {
  generations: number;
  parent: EvolveParent;
  seed: number;
  hyp: EvolveHyp;
  train: TrainOptions;
}

/** Train options that describe the run (not the caller's process): saved for resuming. */
function storableTrainOptions(o: EvolveOptions): TrainOptions {
  const t: TrainOptions & Partial<EvolveOptions> = { ...o };
  for (const k of [
    'signal',
    'log',
    'hyp',
    'generations',
    'parent',
    'resumeEvolve',
    'project',
    'name',
    'existOk',
    'resume',
    'noval',
    'nosave',
    'noweights',
  ] as const)
    delete t[k];
  // Paths absolute, so a resumed run finds its files from any working directory.
  if (t.data !== undefined) t.data = path.resolve(t.data);
  if (t.weights !== undefined) t.weights = path.resolve(t.weights);
  if (typeof t.cfg === 'string' && fs.existsSync(t.cfg)) t.cfg = path.resolve(t.cfg);
  return JSON.parse(JSON.stringify(t)) as TrainOptions;
}

function readSaved(dir: string): SavedEvolve {
  const file = path.join(dir, OPT_FILE);
  if (!fs.existsSync(file)) {
    throw new Yolo5Error(
      'E_FILE',
      `resumeEvolve: ${file} not found (${dir} is not a yolo5 evolve folder)`,
      { file },
    );
  }
  const s = readYamlFile(file) as Partial<SavedEvolve> | null;
  if (
    !s ||
    typeof s !== 'object' ||
    typeof s.generations !== 'number' ||
    (s.parent !== 'single' && s.parent !== 'weighted') ||
    typeof s.seed !== 'number' ||
    typeof s.hyp !== 'object' ||
    s.hyp === null ||
    typeof s.train !== 'object' ||
    s.train === null
  ) {
    throw new Yolo5Error('E_EVOLVE', `${file}: expected generations, parent, seed, hyp and train`, {
      file,
    });
  }
  return s as SavedEvolve;
}

interface GenerationSummary {
  status: TrainResult['status'];
  /** The last epoch (the validated one); absent when none finished or the loss became NaN. */
  last?: EpochRecord;
  saveDir: string;
  frozen: number;
  trainableParameters: number;
}

/**
 * One generation's training, in-process through `train()`. Only a plain summary leaves this
 * function, so the run's native model, EMA and trainer become garbage once it returns.
 */
async function trainGeneration(
  base: TrainOptions,
  hyp: EvolveHyp,
  generation: number,
  run: EvolveRun,
  log: (line: string) => void,
  signal: AbortSignal | undefined,
): Promise<GenerationSummary | undefined> {
  const trainRun = train({
    ...base,
    hyp: hyp as Partial<Hyp>,
    name: `gen${generation}`,
    ...(signal ? { signal } : {}),
    log: (line) => log(`  ${line}`),
  });
  trainRun.on('batch', (b) => run.emit('batch', { ...b, generation }));
  trainRun.on('epoch', (e) => run.emit('epoch', { ...e, generation }));
  let r: TrainResult;
  try {
    r = await trainRun;
  } catch (e) {
    // Aborted before its first epoch: like any aborted generation, it is not recorded.
    if (e instanceof Yolo5Error && e.code === 'E_ABORTED') return undefined;
    throw e;
  }
  // Free this generation's native models (and their trainer) now: V8 does not see that memory.
  r.model.dispose();
  r.ema.dispose();
  const last = r.status === 'non-finite-loss' ? undefined : r.epochs[r.epochs.length - 1];
  return {
    status: r.status,
    ...(last ? { last } : {}),
    saveDir: r.saveDir,
    frozen: r.frozen.length,
    trainableParameters: r.trainableParameters,
  };
}

/** Starts an evolution; await the run for the result, listen to it for progress. */
export function evolve(opts: EvolveOptions = {}): EvolveRun {
  return new EvolveRun('EvolveRun', (self) => runEvolution(opts, self));
}

type Log = (line: string) => void;

/** A new evolve folder with its saved options. */
function createEvolution(input: EvolveOptions, log: Log): { dir: string; saved: SavedEvolve } {
  const generations = checkInteger(
    'generations',
    input.generations ?? EVOLVE_DEFAULTS.generations,
    1,
  );
  const parent = checkChoice('parent', input.parent ?? EVOLVE_DEFAULTS.parent, EVOLVE_PARENTS);
  const seed = checkInteger('seed', input.seed ?? TRAIN_DEFAULTS.seed, 0);
  const start: EvolveHyp = { ...readHyp(input.hyp, log, { complete: true }) };
  if (input.noautoanchor) {
    if (start.anchors !== undefined) log('noautoanchor: the hyp key anchors is not evolved');
    delete start.anchors;
  } else start.anchors ??= 3;
  const saved: SavedEvolve = {
    generations,
    parent,
    seed,
    hyp: start,
    train: storableTrainOptions(input),
  };
  const dir = makeRunDir('evolve', {
    project: input.project ?? EVOLVE_DEFAULTS.project,
    ...(input.name ? { name: input.name } : {}),
    existOk: input.existOk === true,
  });
  const existing = path.join(dir, 'evolve.csv');
  if (fs.existsSync(existing) || fs.existsSync(path.join(dir, OPT_FILE))) {
    throw new Yolo5Error(
      'E_EVOLVE',
      `${dir} already holds an evolution: continue it with --resume-evolve ${dir} (resumeEvolve) or choose another --name`,
      { file: existing },
    );
  }
  writeAtomic(path.join(dir, OPT_FILE), yaml.dump(saved));
  return { dir, saved };
}

/** An evolve folder to continue; temporaries a kill left are removed. */
function reopenEvolution(input: EvolveOptions, log: Log): { dir: string; saved: SavedEvolve } {
  const dir = path.resolve(input.resumeEvolve!);
  removeStaleTemporaries(dir, [OPT_FILE, 'hyp_evolve.yaml']);
  const saved = readSaved(dir);
  if (input.generations !== undefined && input.generations !== saved.generations) {
    // The new total is the run's from now on (a later resume without it keeps it).
    saved.generations = checkInteger('generations', input.generations, 1);
    writeAtomic(path.join(dir, OPT_FILE), yaml.dump(saved));
  }
  log(`Continuing the evolution in ${dir} (its options from ${OPT_FILE})`);
  return { dir, saved };
}

/** The hyperparameters generation `generation` trains: the start, or a mutated parent. */
function nextHyp(
  rows: EvolveRow[],
  start: EvolveHyp,
  keys: readonly EvolveKey[],
  saved: SavedEvolve,
  log: Log,
): EvolveHyp {
  const generation = rows.length + 1;
  const total = saved.generations;
  if (rows.length === 0) {
    log(`Generation ${generation}/${total}: the starting hyperparameters`);
    return { ...start };
  }
  // One generator per generation: a resumed run draws what an uninterrupted one would have.
  const rand = mulberry32((saved.seed + Math.imul(generation, 0x9e3779b1)) >>> 0);
  const parent = selectParent(rows, keys, saved.parent, rand);
  const hyp = mutateHyp(parent, keys, rand);
  const changed = keys.filter((k) => hyp[k] !== parent[k]);
  log(
    `Generation ${generation}/${total}: ${changed.length} of ${keys.length} mutated: ` +
      changed.map((k) => `${k} ${formatNumber(parent[k]!)}→${formatNumber(hyp[k]!)}`).join(', '),
  );
  return hyp;
}

interface EvolveFiles {
  dir: string;
  csv: string;
  hypFile: string;
  keys: EvolveKey[];
}

/** Appends a generation's row to evolve.csv and rewrites hyp_evolve.yaml; returns the rows. */
function recordGeneration(f: EvolveFiles, rows: EvolveRow[], row: EvolveRow): EvolveRow[] {
  if (rows.length === 0 && !fs.existsSync(f.csv)) fs.writeFileSync(f.csv, `${csvHeader(f.keys)}\n`);
  fs.appendFileSync(f.csv, `${csvLine(row, f.keys)}\n`);
  // Values as written, so the rows here equal what a resumed run reads back.
  const stored = readEvolveCsv(f.csv, f.keys);
  writeAtomic(f.hypFile, hypYaml(bestRow(stored)!, stored.length, f.keys, f.hypFile));
  return stored;
}

/** Trains one generation and records it; undefined when it was aborted (not recorded). */
async function evolveGeneration(
  f: EvolveFiles,
  rows: EvolveRow[],
  hyp: EvolveHyp,
  trainBase: TrainOptions,
  total: number,
  run: EvolveRun,
  input: EvolveOptions,
  log: Log,
): Promise<EvolveGeneration | undefined> {
  const generation = rows.length + 1;
  const started = Date.now();
  const r = await trainGeneration(trainBase, hyp, generation, run, log, input.signal);
  if (!r || r.status === 'aborted') {
    log(`Generation ${generation} aborted: not recorded; resume with --resume-evolve ${f.dir}`);
    return undefined;
  }
  const last = r.last;
  const metrics = {
    precision: last?.precision ?? 0,
    recall: last?.recall ?? 0,
    mAP50: last?.mAP50 ?? 0,
    mAP50_95: last?.mAP50_95 ?? 0,
  };
  const stored = recordGeneration(f, rows, {
    generation,
    ...metrics,
    valLoss: last ? [...last.valLoss] : [0, 0, 0],
    fitness: evolveFitness(metrics),
    hyp,
  });
  rows.splice(0, rows.length, ...stored);
  const best = bestRow(rows)!;
  const gen: EvolveGeneration = {
    ...rows[rows.length - 1]!,
    status: r.status,
    saveDir: r.saveDir,
    frozen: r.frozen,
    trainableParameters: r.trainableParameters,
    seconds: (Date.now() - started) / 1000,
  };
  run.emit('generation', gen);
  log(
    `Generation ${generation}/${total} done in ${gen.seconds.toFixed(1)} s: fitness ${gen.fitness.toFixed(5)} ` +
      `(mAP50 ${gen.mAP50.toFixed(4)}, mAP50-95 ${gen.mAP50_95.toFixed(4)}); best so far: generation ${best.generation}, ${best.fitness.toFixed(5)}`,
  );
  return gen;
}

/** The options every generation trains with (the run's own; threads and workers may change). */
function generationOptions(saved: SavedEvolve, input: EvolveOptions, dir: string): TrainOptions {
  return {
    ...saved.train,
    ...(input.threads !== undefined ? { threads: input.threads } : {}),
    ...(input.workers !== undefined ? { workers: input.workers } : {}),
    seed: saved.seed,
    noval: true,
    noweights: true,
    // Each generation's run folder gets its TensorBoard scalars; evolve.png sums them all up.
    noplots: true,
    project: path.join(dir, 'generations'),
    existOk: true,
  };
}

async function runEvolution(input: EvolveOptions, run: EvolveRun): Promise<EvolveResult> {
  const log = (line: string) => {
    input.log?.(line);
    run.emit('log', line);
  };
  if (input.resume) {
    throw new Yolo5Error(
      'E_ARG',
      'resume does not combine with evolution; continue an evolve folder with resumeEvolve (--resume-evolve DIR)',
    );
  }
  const { dir, saved } =
    input.resumeEvolve !== undefined ? reopenEvolution(input, log) : createEvolution(input, log);
  const keys = evolveKeys(saved.train.noautoanchor === true);
  const f: EvolveFiles = {
    dir,
    csv: path.join(dir, 'evolve.csv'),
    hypFile: path.join(dir, 'hyp_evolve.yaml'),
    keys,
  };
  const rows = readEvolveCsv(f.csv, keys);
  // A kill between the evolve.csv row and hyp_evolve.yaml leaves the latter behind: rewrite it.
  if (rows.length > 0)
    writeAtomic(f.hypFile, hypYaml(bestRow(rows)!, rows.length, keys, f.hypFile));
  const start: EvolveHyp = { ...readHyp(saved.hyp as Partial<Hyp>, log, { complete: true }) };
  if (keys.includes('anchors')) start.anchors = saved.hyp.anchors ?? 3;
  else delete start.anchors;
  const total = saved.generations;
  if (rows.length >= total)
    log(`${f.csv} already holds ${rows.length} generations (of ${total}): nothing to train`);
  else
    log(
      `Evolving ${keys.filter((k) => EVOLVE_META[k][0] > 0).length} hyperparameters over ${total} generations` +
        `${rows.length > 0 ? ` (${rows.length} done)` : ''}, parent ${saved.parent}: ${dir}`,
    );
  const trainBase = generationOptions(saved, input, dir);
  const trained: EvolveGeneration[] = [];
  let status: EvolveResult['status'] = 'completed';
  while (rows.length < total) {
    const hyp = input.signal?.aborted ? undefined : nextHyp(rows, start, keys, saved, log);
    const gen = hyp && (await evolveGeneration(f, rows, hyp, trainBase, total, run, input, log));
    if (!gen) {
      status = 'aborted';
      break;
    }
    trained.push(gen);
  }
  const best = bestRow(rows);
  if (rows.length > 0 && saved.train.noplots !== true)
    await plotEvolve(f.csv, path.join(dir, 'evolve.png'), EVOLVE_RESULT_COLUMNS.length);
  if (best) {
    log(
      `Evolution ${status === 'completed' ? 'finished' : 'stopped'}: ${rows.length} generations in ${f.csv}; ` +
        `best generation ${best.generation}, fitness ${best.fitness.toFixed(5)}, hyps in ${f.hypFile}`,
    );
    log(`Train with them: yolo5 train --hyp ${f.hypFile}`);
  }
  return {
    status,
    dir,
    csv: f.csv,
    hypFile: f.hypFile,
    keys,
    rows,
    ...(best ? { best } : {}),
    trained,
  };
}

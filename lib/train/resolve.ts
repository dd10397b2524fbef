/**
 * `resolveTrainOptions`: every training option checked and given its value from TRAIN_DEFAULTS
 * (lib/options.ts). Pure: no files are read here (the build phase checks that files exist).
 */
import { Yolo5Error, show } from '../errors';
import {
  AMP_MODES,
  OPTIMIZERS,
  TRAIN_DEFAULTS,
  checkBoolean,
  checkChoice,
  checkInteger,
} from '../options';
import type { ResolvedTrainOptions, TrainOptions } from './types';

/** Options a resumed run takes from the caller; every other one is the run's own. */
export const RESUME_OVERRIDES = ['epochs', 'workers', 'threads', 'amp'] as const;

function optionalString(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw new Yolo5Error('E_ARG', `Expected a path for ${name} but received ${show(value)}`, {
      value,
    });
  }
  return value;
}

function checkHyp(value: unknown): TrainOptions['hyp'] {
  if (value === undefined || typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Yolo5Error(
      'E_ARG',
      `Expected a hyp yaml path or an object of hyperparameters for hyp but received ${show(value)}`,
      { value },
    );
  }
  return value as TrainOptions['hyp'];
}

function checkLabelSmoothing(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value >= 1) {
    throw new Yolo5Error(
      'E_ARG',
      `Expected number between 0 and 1 for labelSmoothing but received ${show(value)}`,
      { value },
    );
  }
  return value;
}

/**
 * The options of a run. With `saved` (a resumed run's options, from its checkpoint) the run keeps
 * its own options; of `input` only RESUME_OVERRIDES apply, and only when given.
 */
export function resolveTrainOptions(
  input: TrainOptions,
  saved?: TrainOptions,
): ResolvedTrainOptions {
  let o: TrainOptions = { ...input };
  if (saved) {
    o = { ...saved };
    for (const k of RESUME_OVERRIDES)
      if (input[k] !== undefined) Object.assign(o, { [k]: input[k] });
  }
  const D = TRAIN_DEFAULTS;
  // The built-in set is 256 px shapes: a small model at its native size makes a quick CPU demo.
  const builtin = o.data === undefined && !saved;
  const bool = (name: keyof typeof D & keyof TrainOptions) =>
    checkBoolean(name, o[name] ?? D[name]);
  const r: ResolvedTrainOptions = {
    epochs: checkInteger('epochs', o.epochs ?? D.epochs, 1),
    batch: checkInteger('batch', o.batch ?? D.batch, 1),
    imgsz: checkInteger('imgsz', o.imgsz ?? (builtin ? D.builtin.imgsz : D.imgsz), 1),
    rect: bool('rect'),
    imageWeights: bool('imageWeights'),
    multiScale: bool('multiScale'),
    nosave: bool('nosave'),
    noval: bool('noval'),
    noweights: bool('noweights'),
    noautoanchor: bool('noautoanchor'),
    noplots: bool('noplots'),
    cache: bool('cache'),
    workers: checkInteger('workers', o.workers ?? D.workers, 0),
    optimizer: checkChoice('optimizer', o.optimizer ?? D.optimizer, OPTIMIZERS),
    cosLr: bool('cosLr'),
    labelSmoothing: checkLabelSmoothing(o.labelSmoothing ?? D.labelSmoothing),
    patience: checkInteger('patience', o.patience ?? D.patience, 0),
    freezeBn: bool('freezeBn'),
    syncBn: bool('syncBn'),
    channelsLast: bool('channelsLast'),
    amp: checkChoice('amp', o.amp ?? D.amp, AMP_MODES),
    seed: checkInteger('seed', o.seed ?? D.seed, 0),
    singleCls: bool('singleCls'),
    closeMosaic: checkInteger('closeMosaic', o.closeMosaic ?? D.closeMosaic, 0),
    project: optionalString('project', o.project) ?? D.project,
    name: optionalString('name', o.name) ?? D.name,
    existOk: bool('existOk'),
    threads: checkInteger('threads', o.threads ?? D.threads, 1),
  };
  const data = optionalString('data', o.data);
  const weights = optionalString('weights', o.weights);
  let cfg = optionalString('cfg', o.cfg);
  if (cfg === undefined && weights === undefined && !saved) cfg = builtin ? D.builtin.cfg : D.cfg;
  const hyp = checkHyp(o.hyp);
  return {
    ...(data !== undefined ? { data } : {}),
    ...(cfg !== undefined ? { cfg } : {}),
    ...(weights !== undefined ? { weights } : {}),
    ...(hyp !== undefined ? { hyp } : {}),
    ...r,
    ...(o.freeze !== undefined ? { freeze: o.freeze } : {}),
    ...(o.device !== undefined ? { device: o.device } : {}),
  };
}

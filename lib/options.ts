/**
 * Option defaults and checks. The defaults table below is the only place a training default is
 * written: the CLI's help and parsing, `resolveTrainOptions` and (through it) every field the
 * native trainer receives read it. Checks share one message pattern: "Expected <what> for <name>
 * but received <value>".
 */
import * as os from 'node:os';
import { Yolo5Error, show } from './errors';

/** Closed sets of option values: commander's `.choices()` and the API checks both use these. */
export const OPTIMIZERS = ['SGD', 'Adam', 'AdamW'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];
/** `--cache`: only decoded images in memory (`disk` is not supported). */
export const CACHE_MODES = ['ram'] as const;
export const EVOLVE_PARENTS = ['single', 'weighted'] as const;
export type EvolveParent = (typeof EVOLVE_PARENTS)[number];
export const VAL_TASKS = ['val', 'test', 'train'] as const;
/**
 * `--amp`: auto (fp16 with loss scaling on CUDA; bf16 on a CPU with bf16 hardware, avx512_bf16
 * or AMX; else fp32), or bf16, fp16 (CUDA only), off.
 */
export const AMP_MODES = ['auto', 'bf16', 'fp16', 'off'] as const;
export type AmpMode = (typeof AMP_MODES)[number];

const cores = Math.max(1, os.availableParallelism());

/** Training defaults (TrainOptions' names). */
export const TRAIN_DEFAULTS = {
  /** Model yaml when neither cfg nor weights is given. */
  cfg: 'yolov5s.yaml',
  epochs: 100,
  batch: 16,
  imgsz: 640,
  rect: false,
  imageWeights: false,
  multiScale: false,
  nosave: false,
  noval: false,
  noweights: false,
  noautoanchor: false,
  /** No plots or mosaics in the run folder (TensorBoard scalars are still written). */
  noplots: false,
  cache: false,
  /** Loader threads: one per core, at most 8. */
  workers: Math.min(8, cores),
  optimizer: 'SGD' as OptimizerName,
  cosLr: false,
  labelSmoothing: 0,
  patience: 100,
  freezeBn: false,
  /** Distributed: BatchNorm statistics over every rank's batch (SyncBatchNorm semantics). */
  syncBn: false,
  /** Distributed: seconds the rendezvous and each collective may wait (PyTorch's default). */
  distTimeout: 1800,
  /** NHWC memory order for the step: faster convolutions on CPU, the same numbers. */
  channelsLast: true,
  /** Mixed precision (see AMP_MODES); val and detect take the same default. */
  amp: 'auto' as AmpMode,
  /** fp16 training's first loss scale (PyTorch GradScaler's 2^16; it adapts from there). */
  lossScale: 65536,
  seed: 0,
  singleCls: false,
  closeMosaic: 0,
  project: 'runs/train',
  name: 'exp',
  existOk: false,
  /** LibTorch threads: every core. */
  threads: cores,
  /** Nominal batch size: gradients accumulate up to it and weight decay scales with it. */
  nbs: 64,
  /** Training batches are always augmented (what the hyp's augmentation keys say). */
  augment: true,
  /** Without `data`: the built-in synthetic set, with a small model at the set's own size. */
  builtin: { cfg: 'yolov5n.yaml', imgsz: 256 },
} as const;

/** Hyperparameter evolution's own defaults (the rest are TRAIN_DEFAULTS). */
export const EVOLVE_DEFAULTS = {
  generations: 300,
  parent: 'single' as EvolveParent,
  project: 'runs/evolve',
} as const;

function fail(name: string, what: string, value: unknown): never {
  throw new Yolo5Error('E_ARG', `Expected ${what} for ${name} but received ${show(value)}`, {
    value,
  });
}

export function checkInteger(
  name: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(
      name,
      max === Number.MAX_SAFE_INTEGER ? `integer >= ${min}` : `integer between ${min} and ${max}`,
      value,
    );
  }
  return value;
}

export function checkNumber(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    fail(name, `number between ${min} and ${max}`, value);
  }
  return value;
}

/** "SGD, Adam or AdamW": a closed set for messages. */
export function listChoices(choices: readonly string[]): string {
  return choices.length < 2
    ? choices.join('')
    : `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}`;
}

export function checkChoice<T extends string>(
  name: string,
  value: unknown,
  choices: readonly T[],
): T {
  if (!choices.includes(value as T)) fail(name, listChoices(choices), value);
  return value as T;
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(name, 'boolean', value);
  return value;
}

export function checkClasses(name: string, value: unknown, nc: number): number[] {
  if (!Array.isArray(value) || value.some((c) => !Number.isInteger(c) || c < 0 || c >= nc)) {
    fail(name, `a list of class indices between 0 and ${nc - 1}`, value);
  }
  return value as number[];
}

/** Rounds an image size up to a multiple of the stride, as the reference does (with a warning). */
export function checkImageSize(
  name: string,
  value: unknown,
  stride: number,
  log: (line: string) => void,
): number {
  const size = checkInteger(name, value, 1);
  const rounded = Math.max(Math.ceil(size / stride) * stride, stride);
  if (rounded !== size)
    log(
      `WARNING: ${name} ${size} must be a multiple of max stride ${stride}, updating to ${rounded}`,
    );
  return rounded;
}

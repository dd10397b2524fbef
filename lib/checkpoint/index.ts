/// <reference types="node" preserve="true" />
/**
 * Checkpoints: reads Python YOLOv5 checkpoints, plain state dicts and our own format without running
 * any code from the file, and writes checkpoints Python's `torch.load(weights_only=True)` opens.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Yolo5Error, fileError } from '../errors';
import { Converter } from './convert';
import type { PlainValue, StateDict } from './convert';
import { checkpointError, short } from './error';
import { PyDict, PyObject, an } from './pickle';
import type { PyValue } from './pickle';
import { Pickler } from './pickler';
import type { Picklable } from './pickler';
import { DTYPES, HOST_LITTLE_ENDIAN, isHostTensor, numelOf, swapBytes, toHalf } from './tensor';
import type { HostTensor } from './tensor';
import { loadTorchArchive } from './torch';
import { ZipWriter } from './zip';

export type { PlainValue, StateDict } from './convert';
export type { DType, HostTensor, TensorArrayOf, TensorData } from './tensor';
export type { Picklable } from './pickler';
export { PyCall, PyFloat, PyInstance } from './pickler';
export {
  bfloat16ToFloat,
  float32ToHalf,
  floatToHalf,
  halfToFloat,
  isHostTensor,
  numelOf,
  toFloat32,
  toHalf,
} from './tensor';
export { loadTorchArchive } from './torch';
export { PyDict, PyObject, PySet, PyTuple } from './pickle';
export type { PyValue } from './pickle';

/** The marker key and value of checkpoints we write. */
export const YOLO5_FORMAT = 'yolo5';
export const YOLO5_FORMAT_VERSION = 1;

export type CheckpointKind = 'yolov5' | 'state_dict' | 'yolo5';

export interface Checkpoint {
  /** `yolov5`: Python YOLOv5 (model classes pickled); `state_dict`: tensors by name; `yolo5`: ours. */
  kind: CheckpointKind;
  /** The weights to use by PyTorch name, in file order: the EMA weights when the file has them. */
  state: StateDict;
  /** The raw (non-EMA) weights, only when the file holds both `model` and `ema`. */
  modelState?: StateDict;
  /** The model config (the YOLOv5 model yaml) as plain data. */
  yaml?: Record<string, PlainValue>;
  names?: string[];
  nc?: number;
  stride?: number[];
  hyp?: Record<string, PlainValue>;
  epoch?: number;
  bestFitness?: number | null;
  updates?: number | null;
  /** Optimizer state as saved (plain data and tensors). */
  optimizer?: PlainValue;
  /** The training options the file was written with. */
  opt?: Record<string, PlainValue>;
  date?: string;
  /** Every top-level entry except the weights and optimizer, as plain data. */
  meta: Record<string, PlainValue>;
  /** The file it came from. */
  source: string;
}

/** A state dict to write: a Map (order kept) or an object of tensors by PyTorch name. */
export type StateDictInput = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

export interface Yolo5CheckpointData {
  model: StateDictInput;
  ema?: StateDictInput | null;
  updates?: number | null;
  /** Optimizer state: plain nested data and tensors. */
  optimizer?: Picklable;
  /** -1 marks a finished (stripped) checkpoint, as in YOLOv5. */
  epoch?: number;
  bestFitness?: number | null;
  yaml: Readonly<Record<string, unknown>>;
  names: readonly string[];
  /** Defaults to `names.length`. */
  nc?: number;
  stride?: readonly number[];
  hyp?: Readonly<Record<string, unknown>>;
  opt?: Readonly<Record<string, unknown>>;
  /** What a resumed training needs beyond the weights (results rows, best epoch); key `train_state`. */
  trainState?: Readonly<Record<string, unknown>>;
  /** Defaults to now (ISO 8601). */
  date?: string;
}

export interface WriteCheckpointOptions {
  /** Stores floating weights of `model` and `ema` as float16, like YOLOv5 (optimizer stays as is). */
  half?: boolean;
}

// ---- reading ---------------------------------------------------------------------------------

/** Reads a checkpoint file (synchronously). */
export function readCheckpoint(file: string): Checkpoint {
  return readCheckpointBuffer(readFile(file), file);
}

/** Reads a checkpoint file; the file is read without blocking, parsing runs on this thread. */
export async function loadCheckpoint(file: string): Promise<Checkpoint> {
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (err) {
    throw readError(file, err);
  }
  return readCheckpointBuffer(bytes, file);
}

/** Reads a checkpoint held in memory; `source` names it in messages. */
export function readCheckpointBuffer(bytes: Uint8Array, source: string): Checkpoint {
  try {
    return parseCheckpoint(bytes, source);
  } catch (err) {
    // running out of memory or stack is still the file's fault, and must not escape untyped
    if (err instanceof RangeError) {
      throw new Yolo5Error('E_CHECKPOINT', `${source}: cannot be read (${err.message})`, {
        file: source,
        cause: err,
      });
    }
    throw err;
  }
}

/** The reader without the safety net (the fuzzer calls this to see every exception as is). */
export function parseCheckpoint(bytes: Uint8Array, source: string): Checkpoint {
  const { value } = loadTorchArchive(bytes, source);
  return interpret(value, new Converter(source));
}

function readFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw readError(file, err);
  }
}

function readError(file: string, err: unknown): Yolo5Error {
  const code = (err as NodeJS.ErrnoException).code;
  const what =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EISDIR'
        ? 'is a directory, not a checkpoint file'
        : `cannot be read (${(err as Error).message})`;
  return new Yolo5Error('E_FILE', `${file}: ${what}`, { file, cause: err });
}

const HEAVY_KEYS = new Set(['model', 'ema', 'optimizer']);

function interpret(top: PyValue, c: Converter): Checkpoint {
  if (!(top instanceof PyDict)) {
    return c.fail(`not a YOLOv5 checkpoint or state dict: the file holds ${describeTop(top)}`);
  }
  const get = (key: string): PyValue | undefined => top.get(key);
  const meta = (): Record<string, PlainValue> => {
    const out: Record<string, PlainValue> = {};
    for (const [key, value] of top.entries) {
      if (typeof key !== 'string' || HEAVY_KEYS.has(key)) continue;
      Object.defineProperty(out, key, {
        value: c.plain(value, key),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  };
  const common = () => ({
    epoch: c.number(get('epoch'), 'epoch'),
    bestFitness:
      get('best_fitness') === null ? null : c.number(get('best_fitness'), 'best_fitness'),
    updates: get('updates') === null ? null : c.number(get('updates'), 'updates'),
    optimizer: get('optimizer') === undefined ? undefined : c.plain(get('optimizer')!, 'optimizer'),
    opt: c.record(get('opt'), 'opt'),
    date: c.string(get('date'), 'date'),
  });

  if (get('format') === YOLO5_FORMAT) {
    const model = c.stateDict(get('model'), 'model') ?? emptyOrFail(get('model'), 'model', c);
    const ema =
      get('ema') === null || get('ema') === undefined
        ? undefined
        : (c.stateDict(get('ema'), 'ema') ?? emptyOrFail(get('ema'), 'ema', c));
    const yaml = c.record(get('yaml'), 'yaml');
    return prune({
      kind: 'yolo5',
      state: ema ?? model,
      modelState: ema === undefined ? undefined : model,
      yaml,
      names: c.names(get('names'), 'names'),
      nc: c.number(get('nc'), 'nc'),
      stride: c.numbers(get('stride'), 'stride'),
      hyp: c.record(get('hyp'), 'hyp'),
      ...common(),
      meta: meta(),
      source: c.source,
    });
  }

  const ema = get('ema');
  const model = get('model');
  const bag = ema instanceof PyObject ? ema : model instanceof PyObject ? model : undefined;
  if (bag !== undefined) {
    const which = bag === ema ? 'ema' : 'model';
    const yaml = c.record(bag.get('yaml'), `${which}.yaml`);
    const names = c.names(bag.get('names'), `${which}.names`);
    const yamlNc = yaml?.['nc'];
    return prune({
      kind: 'yolov5',
      state: c.moduleState(bag, which),
      modelState:
        bag === ema && model instanceof PyObject ? c.moduleState(model, 'model') : undefined,
      yaml,
      names,
      nc:
        typeof yamlNc === 'number'
          ? yamlNc
          : (c.number(bag.get('nc'), `${which}.nc`) ?? names?.length),
      stride: c.numbers(bag.get('stride'), `${which}.stride`),
      hyp: c.record(bag.get('hyp'), `${which}.hyp`),
      ...common(),
      meta: meta(),
      source: c.source,
    });
  }

  const direct = c.stateDict(top, 'state dict');
  if (direct !== undefined)
    return { kind: 'state_dict', state: direct, meta: {}, source: c.source };
  for (const key of ['model', 'state_dict', 'model_state_dict']) {
    const nested = c.stateDict(get(key), key);
    if (nested !== undefined) {
      return prune({
        kind: 'state_dict',
        state: nested,
        ...common(),
        meta: meta(),
        source: c.source,
      });
    }
  }
  const keys = [...top.entries.keys()].slice(0, 12).map((k) => short(k, 40));
  return c.fail(
    `not a YOLOv5 checkpoint or state dict: no 'model'/'ema' module and not a dict of tensors ` +
      `(keys: ${keys.join(', ')}${top.entries.size > 12 ? ', …' : ''})`,
  );
}

function emptyOrFail(value: PyValue | undefined, key: string, c: Converter): StateDict {
  if (value instanceof PyDict && value.entries.size === 0) return new Map();
  return c.fail(`'${key}' is not a state dict (tensors by name)`);
}

function describeTop(value: PyValue): string {
  return isHostTensor(value) ? 'a tensor' : an(value);
}

/** Drops undefined fields so checkpoints compare and print cleanly. */
function prune(ckpt: Checkpoint): Checkpoint {
  for (const key of Object.keys(ckpt) as (keyof Checkpoint)[]) {
    if (ckpt[key] === undefined) delete ckpt[key];
  }
  return ckpt;
}

// ---- writing ---------------------------------------------------------------------------------

const ARCHIVE = 'archive/';

/**
 * Writes `data` as a PyTorch zip checkpoint of plain data (weights by PyTorch name), atomically:
 * a temporary file in the same folder is renamed over `file` once complete.
 */
export function writeCheckpoint(
  file: string,
  data: Yolo5CheckpointData,
  options: WriteCheckpointOptions = {},
): void {
  writeAtomically(file, (sink) => serialiseCheckpoint(data, options, file, sink));
}

/**
 * Writes any picklable value as a torch.save zip archive, atomically. Values with class instances
 * (PyInstance) need Python's `torch.load(..., weights_only=False)`.
 */
export function writeTorchFile(file: string, value: Picklable): void {
  writeAtomically(file, (sink) => serialisePickle(value, file, sink));
}

function writeAtomically(file: string, write: (sink: (chunk: Uint8Array) => void) => void): void {
  const dir = path.dirname(path.resolve(file));
  const temp = path.join(
    dir,
    `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`,
  );
  let fd: number;
  try {
    fd = fs.openSync(temp, 'wx', 0o644);
  } catch (err) {
    throw fileError('write the checkpoint', file, err);
  }
  try {
    try {
      write((chunk) => {
        for (let done = 0; done < chunk.length;) done += fs.writeSync(fd, chunk, done);
      });
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw fileError('write the checkpoint', file, err);
  }
}

/**
 * Copies a checkpoint atomically (best.pt from last.pt): into `<to>.<pid>.tmp`, then renamed over
 * `to`, so `to` is always whole. A failure (a full disk) removes the temporary and throws one
 * E_FILE line naming `to`.
 */
export async function copyCheckpoint(
  from: string,
  to: string,
  beforeRename: () => void = () => {},
): Promise<void> {
  const tmp = `${to}.${process.pid}.tmp`;
  try {
    await fs.promises.copyFile(from, tmp);
    beforeRename(); // a test hook: training's crash point between the copy and the rename
    await fs.promises.rename(tmp, to);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw fileError(`copy ${from} to`, to, err);
  }
}

/** The bytes `writeCheckpoint` would write. */
export function checkpointToBuffer(
  data: Yolo5CheckpointData,
  options: WriteCheckpointOptions = {},
  source = '<buffer>',
): Buffer {
  const chunks: Uint8Array[] = [];
  serialiseCheckpoint(data, options, source, (chunk) => chunks.push(chunk));
  return Buffer.concat(chunks);
}

function serialiseCheckpoint(
  data: Yolo5CheckpointData,
  options: WriteCheckpointOptions,
  source: string,
  sink: (chunk: Uint8Array) => void,
): void {
  const fail = (what: string): never => checkpointError(source, what);
  const halves = new Map<HostTensor, HostTensor>();
  const weights = (state: StateDictInput, key: string): PyDict => {
    const dict = new PyDict(true);
    const entries = state instanceof Map ? [...state.entries()] : Object.entries(state);
    for (const [name, tensor] of entries) {
      if (!isHostTensor(tensor)) fail(`${key}: '${name}' is not a tensor`);
      let stored = tensor;
      if (options.half) {
        stored = halves.get(tensor) ?? toHalf(tensor);
        halves.set(tensor, stored);
      }
      dict.entries.set(name, stored);
    }
    return dict;
  };
  const top: Record<string, Picklable> = {
    format: YOLO5_FORMAT,
    version: YOLO5_FORMAT_VERSION,
    epoch: data.epoch ?? -1,
    best_fitness: data.bestFitness ?? null,
    model: weights(data.model, 'model'),
    ema: data.ema ? weights(data.ema, 'ema') : null,
    updates: data.updates ?? null,
    optimizer: data.optimizer ?? null,
    opt: (data.opt ?? null) as Picklable,
    hyp: (data.hyp ?? null) as Picklable,
    yaml: data.yaml as Picklable,
    names: data.names,
    nc: data.nc ?? data.names.length,
    stride: data.stride ?? null,
    ...(data.trainState ? { train_state: data.trainState as Picklable } : {}),
    date: data.date ?? new Date().toISOString(),
  };
  serialisePickle(top, source, sink);
}

function serialisePickle(top: Picklable, source: string, sink: (chunk: Uint8Array) => void): void {
  const fail = (what: string): never => checkpointError(source, what);

  const storages: { key: string; bytes: Uint8Array }[] = [];
  const pickler = new Pickler({
    fail,
    persistTensor(tensor, where) {
      const numel = numelOf(tensor.shape);
      if (!tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        fail(`${where}: bad shape`);
      if (tensor.data.length !== numel) {
        fail(
          `${where}: ${tensor.data.length} values do not fill shape [${tensor.shape.join(', ')}]`,
        );
      }
      const key = String(storages.length);
      storages.push({ key, bytes: littleEndianBytes(tensor) });
      return { storageClass: DTYPES[tensor.dtype].storage, key, numel, shape: tensor.shape };
    },
  });
  const pickle = pickler.dump(top);

  const zip = new ZipWriter(sink);
  zip.add(`${ARCHIVE}data.pkl`, pickle);
  zip.add(`${ARCHIVE}byteorder`, Buffer.from('little'));
  for (const { key, bytes } of storages) zip.add(`${ARCHIVE}data/${key}`, bytes);
  zip.add(`${ARCHIVE}version`, Buffer.from('3\n'));
  zip.finish();
}

function littleEndianBytes(tensor: HostTensor): Uint8Array {
  const view = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  if (HOST_LITTLE_ENDIAN) return view;
  const copy = Uint8Array.from(view);
  swapBytes(copy, DTYPES[tensor.dtype].itemSize);
  return copy;
}

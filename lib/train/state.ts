/**
 * What a training checkpoint holds beyond the weights, and results.csv. The checkpoint carries
 * every results row and the best epoch, so a resumed run can repair a results.csv or best.pt that
 * a kill left behind (the checkpoint is always written before either).
 */
import type { HostTensor, Picklable, PlainValue } from '../checkpoint';
import { Yolo5Error } from '../errors';
import type { Model } from '../model/model';
import type { NativeOptimizerBuffer, TypedData } from '../native/addon';
import { SCALAR_TAGS } from '../report/run-plots';

/** results.csv's columns: the epoch, then the values each epoch also logs to TensorBoard. */
export const RESULTS_HEADER = ['epoch', ...SCALAR_TAGS];

/** The training state after the last finished epoch (checkpoint key `train_state`). */
export interface TrainState {
  /** results.csv rows of every finished epoch, as numbers in RESULTS_HEADER order. */
  results: number[][];
  /** The last finished epoch (-1: none). */
  lastEpoch: number;
  /** The epoch best.pt holds (-1: none yet). */
  bestEpoch: number;
  /** Validated epochs since the best one (the patience counter). */
  sinceBest: number;
  /** The last validation's mAP50-95 per class (for --image-weights), or null. */
  maps: number[] | null;
  /** EMA updates so far (kept in finished, stripped files too, to continue them). */
  updates: number;
}

export function emptyTrainState(): TrainState {
  return { results: [], lastEpoch: -1, bestEpoch: -1, sinceBest: 0, maps: null, updates: 0 };
}

/** A copy of the state as checkpoint data (the loop goes on changing `s`). */
export function trainStateToPicklable(s: TrainState): Record<string, Picklable> {
  return {
    results: s.results.map((r) => [...r]),
    last_epoch: s.lastEpoch,
    best_epoch: s.bestEpoch,
    since_best: s.sinceBest,
    maps: s.maps ? [...s.maps] : null,
    updates: s.updates,
  };
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** The state a checkpoint holds; undefined for files without one (older yolo5 or Python runs). */
export function trainStateFrom(value: PlainValue | undefined): TrainState | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, PlainValue>;
  const results = v['results'];
  const rowsOk =
    Array.isArray(results) &&
    results.every(
      (r) =>
        Array.isArray(r) &&
        r.length === RESULTS_HEADER.length &&
        r.every((x) => typeof x === 'number'),
    );
  const maps = v['maps'];
  if (
    !rowsOk ||
    !isNumber(v['last_epoch']) ||
    !isNumber(v['best_epoch']) ||
    !isNumber(v['since_best']) ||
    !isNumber(v['updates'])
  )
    return undefined;
  return {
    results: results as number[][],
    lastEpoch: v['last_epoch'],
    bestEpoch: v['best_epoch'],
    sinceBest: v['since_best'],
    maps: Array.isArray(maps) && maps.every(isNumber) ? (maps as number[]) : null,
    updates: v['updates'],
  };
}

/** One results.csv line, formatted as the reference writes its columns. */
export function resultsLine(row: readonly number[]): string {
  return `${row.map((v) => (Number.isInteger(v) ? String(v) : v.toPrecision(5))).join(',')}\n`;
}

export function resultsText(rows: readonly (readonly number[])[]): string {
  return `${RESULTS_HEADER.join(',')}\n${rows.map(resultsLine).join('')}`;
}

function hostTensor(name: string, t: { shape: number[]; data: TypedData }): HostTensor {
  if (t.data instanceof Float32Array) return { dtype: 'float32', shape: t.shape, data: t.data };
  if (t.data instanceof BigInt64Array) return { dtype: 'int64', shape: t.shape, data: t.data };
  if (t.data instanceof Float64Array) return { dtype: 'float64', shape: t.shape, data: t.data };
  if (t.data instanceof Int32Array) return { dtype: 'int32', shape: t.shape, data: t.data };
  throw new Yolo5Error('E_NATIVE', `${name}: unexpected tensor type`);
}

/** A model's state as checkpoint tensors (fresh copies: the checkpoint writer may take them). */
export async function stateMap(model: Model): Promise<Map<string, HostTensor>> {
  const m = new Map<string, HostTensor>();
  for (const t of await model.getState()) m.set(t.name, hostTensor(t.name, t));
  return m;
}

export function optimizerToPicklable(
  buffers: NativeOptimizerBuffer[],
  kind: string,
  lastOptStep: number,
): Picklable {
  const state: Record<string, Record<string, HostTensor>> = {};
  for (const b of buffers) {
    (state[b.name] ??= {})[b.key] = { dtype: 'float32', shape: b.shape, data: b.data };
  }
  return { type: kind, last_opt_step: lastOptStep, state };
}

export function optimizerFromCheckpoint(value: unknown): {
  buffers: NativeOptimizerBuffer[];
  lastOptStep?: number;
} {
  const buffers: NativeOptimizerBuffer[] = [];
  if (typeof value !== 'object' || value === null) return { buffers };
  const v = value as { state?: Record<string, Record<string, HostTensor>>; last_opt_step?: number };
  for (const [name, keys] of Object.entries(v.state ?? {})) {
    for (const [key, t] of Object.entries(keys)) {
      if (t && typeof t === 'object' && 'data' in t && t.data instanceof Float32Array) {
        buffers.push({ name, key, shape: t.shape, data: t.data });
      }
    }
  }
  return {
    buffers,
    ...(typeof v.last_opt_step === 'number' ? { lastOptStep: v.last_opt_step } : {}),
  };
}

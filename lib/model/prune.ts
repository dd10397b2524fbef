/**
 * Global magnitude (L1) pruning: the smallest |w| over every Conv2d weight of the model are set to
 * zero, permanently (plain tensors, no masks). Unstructured zeros keep every tensor's shape, so
 * dense convolutions run exactly as fast as before; what changes is the weights' compressibility.
 */
import { Yolo5Error, show } from '../errors';
import type { NativeStateEntry, TypedData } from '../native/addon';

/** What pruning needs of a model (`Model` has it); kept structural so this file imports no values. */
export interface PrunableModel {
  stateDict(): NativeStateEntry[];
  getState(): Promise<{ name: string; shape: number[]; dtype: string; data: TypedData }[]>;
  loadState(entries: { name: string; shape: number[]; data: TypedData }[]): Promise<{
    loaded: number;
  }>;
}

export interface PruneLayer {
  /** The Conv2d weight's state-dict name (`model.0.conv.weight`, `model.24.m.0.weight`). */
  name: string;
  numel: number;
  /** Zero elements after pruning. */
  zeros: number;
}

export interface PruneResult {
  /** The requested share of Conv2d weight elements to zero. */
  amount: number;
  /** Conv2d weight elements (all `*.weight` parameters of rank 4). */
  convWeights: number;
  /** Zero Conv2d weight elements after pruning (those already zero count too). */
  convZeros: number;
  /** convZeros / convWeights. */
  convSparsity: number;
  /** Every parameter element (conv weights, biases, BatchNorm weights). */
  parameters: number;
  /** Zero parameter elements after pruning. */
  zeros: number;
  /** zeros / parameters. */
  sparsity: number;
  /** The largest |w| that was zeroed (0 when nothing was). */
  threshold: number;
  layers: PruneLayer[];
}

/** Checks a prune amount: a finite number strictly between 0 and 1. */
export function checkAmount(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value >= 1) {
    throw new Yolo5Error(
      'E_ARG',
      `Expected number between 0 and 1 (exclusive) for amount but received ${show(value)}`,
      { value },
    );
  }
  return value;
}

const ABS = 0x7fffffff;
const EXPONENT = 0x7f800000;

/** For non-negative floats the IEEE-754 bit pattern orders like the value: select on the bits. */
function bitsOf(t: Float32Array): Uint32Array {
  return new Uint32Array(t.buffer, t.byteOffset, t.length);
}

/**
 * The k-th smallest |w| (1-based) over all tensors, as magnitude bits, and how many elements lie
 * strictly below it. Two 16-bit histogram passes (high half, then low half within the chosen
 * bucket): linear time, no copy of the weights, no sort.
 */
function selectKth(tensors: Float32Array[], k: number): { bits: number; below: number } {
  const high = new Float64Array(65536);
  for (const t of tensors) {
    const u = bitsOf(t);
    for (let i = 0; i < u.length; i++) high[(u[i]! & ABS) >>> 16]!++;
  }
  let below = 0;
  let hi = 0;
  while (below + high[hi]! < k) below += high[hi++]!;
  const low = new Float64Array(65536);
  for (const t of tensors) {
    const u = bitsOf(t);
    for (let i = 0; i < u.length; i++) {
      const a = u[i]! & ABS;
      if (a >>> 16 === hi) low[a & 0xffff]!++;
    }
  }
  let lo = 0;
  while (below + low[lo]! < k) below += low[lo++]!;
  return { bits: ((hi << 16) | lo) >>> 0, below };
}

function countZeros(data: TypedData): number {
  let n = 0;
  for (let i = 0; i < data.length; i++) if (data[i] === 0 || data[i] === 0n) n++;
  return n;
}

/**
 * Zeros the `amount` share of smallest-magnitude Conv2d weight elements, taken globally over
 * every convolution (Detect's output convs included; biases and BatchNorm excluded). Exactly
 * round(amount · n) elements end up selected; among equal magnitudes at the threshold the ones
 * earlier in state-dict order (then in memory order) go first, so the result is deterministic.
 *
 * Works on whatever Conv2d weights the model has: on a fused model they already carry the
 * BatchNorm scale, so the ranking is by the folded weights. requires_grad (freezing) is left as
 * it was; frozen weights are pruned like the others. Training afterwards may make zeros non-zero
 * again (nothing masks the gradients).
 */
export async function pruneModel(model: PrunableModel, amount: number): Promise<PruneResult> {
  checkAmount(amount);
  const kinds = new Map(model.stateDict().map((e) => [e.name, e.kind]));
  const state = await model.getState();
  const params = state.filter((t) => kinds.get(t.name) === 'param');
  const convs = params.filter((t) => t.name.endsWith('.weight') && t.shape.length === 4);
  if (convs.length === 0)
    throw new Yolo5Error('E_WEIGHTS', 'The model has no Conv2d weights to prune');
  const data: Float32Array[] = [];
  for (const t of convs) {
    if (!(t.data instanceof Float32Array))
      throw new Yolo5Error('E_WEIGHTS', `${t.name}: expected float32 weights but found ${t.dtype}`);
    const u = bitsOf(t.data);
    for (let i = 0; i < u.length; i++) {
      if ((u[i]! & EXPONENT) === EXPONENT) {
        throw new Yolo5Error(
          'E_WEIGHTS',
          `${t.name}: cannot prune a non-finite weight (${t.data[i]} at element ${i})`,
          { value: t.data[i] },
        );
      }
    }
    data.push(t.data);
  }
  const n = data.reduce((s, d) => s + d.length, 0);
  const k = Math.round(amount * n);
  let threshold = 0;
  if (k > 0) {
    const { bits, below } = selectKth(data, k);
    threshold = new Float32Array(new Uint32Array([bits]).buffer)[0]!;
    let ties = k - below;
    for (const d of data) {
      const u = bitsOf(d);
      for (let i = 0; i < u.length; i++) {
        const a = u[i]! & ABS;
        if (a < bits) d[i] = 0;
        else if (a === bits && ties > 0) {
          d[i] = 0;
          ties--;
        }
      }
    }
    const report = await model.loadState(
      convs.map((t) => ({ name: t.name, shape: t.shape, data: t.data })),
    );
    if (report.loaded !== convs.length)
      throw new Yolo5Error(
        'E_NATIVE',
        `writing pruned weights: ${report.loaded}/${convs.length} loaded`,
      );
  }
  const layers = convs.map((t) => ({
    name: t.name,
    numel: t.data.length,
    zeros: countZeros(t.data),
  }));
  const convZeros = layers.reduce((s, l) => s + l.zeros, 0);
  const parameters = params.reduce((s, t) => s + t.data.length, 0);
  const zeros = params.reduce((s, t) => s + countZeros(t.data), 0);
  return {
    amount,
    convWeights: n,
    convZeros,
    convSparsity: convZeros / n,
    parameters,
    zeros,
    sparsity: zeros / parameters,
    threshold,
    layers,
  };
}

/** "Pruned to 30.0% global sparsity (29.7% of all parameters)". */
export function describePrune(r: PruneResult): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return `Pruned to ${pct(r.convSparsity)} global sparsity (${pct(r.sparsity)} of all parameters)`;
}

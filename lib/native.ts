/**
 * The one place that loads the native addon. Everything else imports its types and `native()`.
 */
import { Yolo5Error } from './errors';
import { packageRoot } from './paths';

export type TypedData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface NativeTensor {
  shape: number[];
  data: TypedData;
}

export interface NamedTensor extends NativeTensor {
  name: string;
  dtype: string;
}

/** A resolved model description (see lib/config.ts), the native builder's input. */
export interface NativeLayerSpec {
  from: number[];
  module: string;
  repeats: number;
  args: NativeArg[];
}
export type NativeArg = number | boolean | string | null | NativeArg[];
export interface NativeModelSpec {
  inChannels: number;
  activation: { kind: string; slope?: number };
  layers: NativeLayerSpec[];
}

export interface NativeParameter {
  name: string;
  shape: number[];
  requiresGrad: boolean;
}

export interface NativeStateEntry {
  name: string;
  shape: number[];
  kind: 'param' | 'buffer';
  dtype: string;
}

export interface NativeInfo {
  layers: number;
  parameters: number;
  gradients: number;
  gflops: number;
  nc: number;
  inChannels: number;
  fused: boolean;
  stride: number[];
  anchors: NativeTensor;
}

export interface NativeLoadReport {
  loaded: number;
  missing: string[];
  unexpected: string[];
  mismatched: string[];
}

export interface NativeModel {
  namedParameters(): NativeParameter[];
  stateEntries(): NativeStateEntry[];
  setRequiresGrad(names: string[], flag: boolean): number;
  info(): NativeInfo;
  forward(
    data: Float32Array,
    shape: number[],
    options: { train?: boolean },
  ): Promise<{ output?: NativeTensor; raw: NativeTensor[] }>;
  loadState(
    entries: { name: string; shape: number[]; data: TypedData }[],
  ): Promise<NativeLoadReport>;
  getState(): Promise<NamedTensor[]>;
  fuse(): Promise<void>;
}

export interface NativeAddon {
  createModel(spec: NativeModelSpec): Promise<NativeModel>;
  libtorchVersion: string;
  cudaInfo(): { available: boolean; deviceCount: number };
  getThreads(): number;
  setThreads(n: number): void;
  loadTensorFile(file: string): Promise<NamedTensor[]>;
}

let addon: NativeAddon | undefined;
let loadError: Error | undefined;

/** The addon, loaded on first use; throws one actionable Yolo5Error when it cannot load. */
export function native(): NativeAddon {
  if (addon) return addon;
  if (loadError) throw loadError;
  const root = packageRoot();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => unknown;
    addon = load(root) as NativeAddon;
    return addon;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    loadError = new Yolo5Error(
      'E_NATIVE',
      `yolo5: the native addon could not be loaded from ${root} (${message}). ` +
        'Build it with `npm run build:native` (needs LibTorch: run scripts/setup.sh, or set ' +
        'LIBTORCH=/path/to/libtorch).',
      { cause: e },
    );
    throw loadError;
  }
}

/**
 * Runs a native call, keeping the caller's stack: the native rejection's message goes onto an
 * Error created here, before the asynchronous hop.
 */
export async function nativeCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  const stack = new Error();
  try {
    return await call();
  } catch (e) {
    if (e instanceof Yolo5Error) throw e;
    const err = new Yolo5Error(
      'E_NATIVE',
      `${what}: ${e instanceof Error ? e.message : String(e)}`,
      {
        cause: e,
      },
    );
    err.stack = `Yolo5Error: ${err.message}\n${(stack.stack ?? '').split('\n').slice(1).join('\n')}`;
    throw err;
  }
}

/**
 * The one place that loads the native addon. Everything else imports its types and `native()`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Yolo5Error, type Yolo5ErrorCode } from '../errors';
import { chooseAddon, currentEnvironment, type AddonChoice } from './libtorch';
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

/** A resolved model description (see lib/config/model.ts), the native builder's input. */
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
  layerGflops: number[];
  nc: number;
  inChannels: number;
  fused: boolean;
  stride: number[];
  anchors: NativeTensor;
  /** Bytes of parameters and buffers in host memory (what V8 is told this model holds). */
  hostBytes: number;
}

export interface NativeLoadReport {
  loaded: number;
  missing: string[];
  unexpected: string[];
  mismatched: string[];
}

/** An image for the native side: a file path, encoded bytes, or raw RGB pixels. */
export type NativeImage = string | Uint8Array | { data: Uint8Array; width: number; height: number };

export interface NativePredictOptions {
  imgsz: number;
  /** Val: letterbox every image to this [height, width] (no upscaling) after the long-side resize. */
  shape?: [number, number];
  conf: number;
  iou: number;
  multiLabel: boolean;
  agnostic: boolean;
  maxDet: number;
  classes?: number[];
  /** Val loss: the loss gains, and per image its labels (rows class, cx, cy, w, h normalised). */
  loss?: LossHyp;
  labels?: Float32Array[];
  /** Test-time augmentation with the reference's passes (scale 1; 0.83 flipped; 0.67). */
  augment?: boolean;
  /**
   * Exactly these test-time passes instead (overrides `augment`): each resizes the letterboxed
   * batch by `scale` in (0, 1] and, with `flip`, mirrors it left-right first. With two or more
   * passes the first drops its largest-stride rows and the last its smallest-stride rows.
   */
  tta?: { scale: number; flip: boolean }[];
  /** Further models whose raw predictions join this model's before NMS (same nc and device). */
  ensemble?: NativeModel[];
  /** Autocast around the forward passes (absent: fp32); boxes decode from fp32 predictions. */
  amp?: NativeAmp;
}

export interface NativePrediction {
  ok: boolean;
  error?: string;
  width: number;
  height: number;
  /** (n, 6) rows x1, y1, x2, y2, conf, cls in source pixels. */
  detections: Float32Array;
}

export interface NativeTiming {
  pre: number;
  inference: number;
  nms: number;
  images: number;
  /** Mean box, obj, cls loss over the call's batches (when asked for). */
  loss?: [number, number, number];
}

export interface NativeDrawBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  cls: number;
  label: string;
}

/** Loss gains as training scales them (box·3/nl, cls·nc/80·3/nl, obj·(imgsz/640)²·3/nl). */
export interface LossHyp {
  box: number;
  cls: number;
  obj: number;
  cls_pw: number;
  obj_pw: number;
  anchor_t: number;
  fl_gamma: number;
  label_smoothing: number;
}

/** A concrete mixed-precision mode for the native side ('auto' is resolved in lib/native/amp). */
export type NativeAmp = 'off' | 'bf16' | 'fp16';

/**
 * One native model. Synchronous methods never wait for a running call: `namedParameters`,
 * `stateEntries` and `info` read a listing kept beside the model, and `setRequiresGrad` throws an
 * Error with code E_BUSY while a call (a training epoch) is using the model. After `dispose()`
 * every method but `dispose` throws an Error with code E_DISPOSED.
 */
export interface NativeModel {
  namedParameters(): NativeParameter[];
  stateEntries(): NativeStateEntry[];
  setRequiresGrad(names: string[], flag: boolean): number;
  info(): NativeInfo;
  forward(
    data: Float32Array,
    shape: number[],
    options: { train: boolean; amp?: NativeAmp },
  ): Promise<{ output?: NativeTensor; raw: NativeTensor[] }>;
  loadState(
    entries: { name: string; shape: number[]; data: TypedData }[],
  ): Promise<NativeLoadReport>;
  getState(): Promise<NamedTensor[]>;
  fuse(): Promise<void>;
  clone(): Promise<NativeModel>;
  /** Moves the model ('cpu', 'cuda:0'); resolves with the device now used. */
  to(device: string): Promise<string>;
  loss(
    input: Float32Array,
    shape: number[],
    targets: Float32Array,
    hyp: LossHyp,
    options: { train: boolean; gradNames: string[]; channelsLast: boolean; amp?: NativeAmp },
  ): Promise<{
    loss: number;
    lbox: number;
    lobj: number;
    lcls: number;
    gradNorms: Record<string, number>;
  }>;
  predict(
    images: NativeImage[],
    options: NativePredictOptions,
  ): Promise<{ results: NativePrediction[]; timing: NativeTiming }>;
  /**
   * The AMP self-check: the input (batch, 3, h, w) through the model in eval mode in fp32 and
   * under `amp`; the largest |Δ| of the decoded boxes' x, y, w, h over the input's size.
   */
  ampCheck(
    input: Float32Array,
    shape: number[],
    amp: NativeAmp,
  ): Promise<{ maxDiff: number; finite: boolean; rows: number }>;
  /**
   * Frees the native model now, or when the calls in flight have completed; disposes every
   * trainer built on it. Never waits; a second call does nothing.
   */
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeSample {
  path: string;
  width: number;
  height: number;
  /** Rows class, cx, cy, w, h (normalised). */
  labels: Float32Array;
}

/** Every field is required: the native side has no defaults (a missing one is a TypeError). */
export interface NativeTrainerOptions {
  imgsz: number;
  batch: number;
  stride: number;
  augment: boolean;
  rect: boolean;
  cache: boolean;
  workers: number;
  seed: number;
  epochs: number;
  nbs: number;
  optimizer: 'SGD' | 'Adam' | 'AdamW';
  cosLr: boolean;
  freezeBn: boolean;
  /** Run the step in NHWC memory order (weights and batches); the numbers are the same. */
  channelsLast: boolean;
  multiScale: boolean;
  /** Autocast around the forward pass ('off': fp32); the loss, weights and EMA stay fp32. */
  amp: NativeAmp;
  /** > 0: dynamic loss scaling (fp16) starting at this scale; 0: none. */
  lossScale: number;
  /** Augmentation and optimizer hyperparameters (hyp yaml keys). */
  hyp: Record<string, number>;
  loss: LossHyp;
  /** Data-parallel training in this joined group: `batch` is global, the loader's is per rank. */
  distributed?: { group: NativeProcessGroup; syncBn: boolean };
  /** Test hook: the first step's (averaged) gradients are written to this file (see README). */
  testGradients?: string;
}

/** What `NativeProcessGroup.join` takes: torchrun's variables, checked (lib/train/dist.ts). */
export interface NativeGroupOptions {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
  /** Seconds, for the rendezvous and every collective. */
  timeout: number;
  backend: 'gloo' | 'nccl';
}

/** One rank's membership of a c10d process group (binding/train/dist.h). */
export interface NativeProcessGroup {
  join(options: NativeGroupOptions): Promise<void>;
  info(): { rank: number; worldSize: number; backend: string; who: string };
  /** Small payloads through the rendezvous store; get waits (up to the timeout) for the key. */
  set(key: string, value: string): Promise<void>;
  get(key: string): Promise<string>;
  barrier(): Promise<void>;
  /** Rank 0's parameters and buffers into this rank's model. */
  broadcastModel(model: NativeModel): Promise<void>;
  leave(): void;
}

/** Cumulative seconds this epoch: loader wait, forward + loss, backward, optimizer step + EMA. */
export interface NativeStepTimes {
  data: number;
  forward: number;
  backward: number;
  optimizer: number;
}

export interface NativeBatchProgress {
  epoch: number;
  batch: number;
  batches: number;
  lbox: number;
  lobj: number;
  lcls: number;
  instances: number;
  size: number;
  seconds: number;
  times: NativeStepTimes;
}

export interface NativeEpochStats {
  lbox: number;
  lobj: number;
  lcls: number;
  lrs: number[];
  batches: number;
  images: number;
  seconds: number;
  times: NativeStepTimes;
  aborted: boolean;
  nonFinite: boolean;
  /** With loss scaling: optimizer steps skipped this epoch (inf/NaN gradients). */
  skippedSteps: number;
  /** The loss scale at the epoch's end (0 without loss scaling). */
  lossScale: number;
  warnings: string[];
}

export interface NativeOptimizerBuffer {
  name: string;
  key: string;
  shape: number[];
  data: Float32Array;
}

/**
 * A trainer belongs to its model and EMA: disposing either disposes it. `info()` and `abort()`
 * never wait; `setCounters` and `setSampleWeights` throw code E_BUSY while a call is running.
 */
export interface NativeTrainer {
  runEpoch(
    epoch: number,
    mosaic: boolean,
    onBatch: (p: NativeBatchProgress) => void,
  ): Promise<NativeEpochStats>;
  abort(): void;
  info(): {
    batchesPerEpoch: number;
    images: number;
    accumulate: number;
    weightDecay: number;
    emaUpdates: number;
    lastOptStep: number;
  };
  optimizerState(): Promise<NativeOptimizerBuffer[]>;
  loadOptimizerState(buffers: NativeOptimizerBuffer[]): Promise<void>;
  setCounters(c: { emaUpdates?: number; lastOptStep?: number }): void;
  setSampleWeights(weights: Float64Array | null): void;
  /** Data-parallel: the parameters whose gradients are averaged, what the last step sent. */
  distributedInfo(): {
    parameters: string[];
    lastStepBytes: number;
    lastStepBuckets: number;
  } | null;
  sample(
    index: number,
    epoch: number,
    mosaic: boolean,
  ): Promise<{ width: number; height: number; data: Uint8Array; labels: Float32Array }>;
  /** Aborts a running epoch and frees the loader and optimizer once it has ended. */
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeAddon {
  NativeTrainer: new (
    model: NativeModel,
    ema: NativeModel | null,
    samples: NativeSample[],
    options: NativeTrainerOptions,
  ) => NativeTrainer;
  NativeProcessGroup: new () => NativeProcessGroup;
  /** Whether this build has distributed training (the Gloo headers were found) and NCCL. */
  distInfo(): { available: boolean; nccl: boolean };
  createModel(spec: NativeModelSpec): Promise<NativeModel>;
  libtorchVersion: string;
  cudaInfo(): { available: boolean; deviceCount: number };
  /** The CUDA caching allocator's bytes on a device (peak = max_memory_allocated); CUDA builds. */
  cudaMemory(
    device: number,
    resetPeak?: boolean,
  ): { allocated: number; peak: number; reserved: number };
  /**
   * The fp16 loss scaler on CPU tensors (tests): `grads` unscaled from `initScale` (finite: no
   * inf/NaN), then the scale after each update with the given found-inf flags.
   */
  gradScalerTrace(
    options: { initScale: number; growth: number; backoff: number; interval: number },
    grads: Float32Array[],
    foundInf: boolean[],
  ): { finite: boolean; unscaled: Float32Array[]; scales: number[] };
  /** cuDNN benchmark mode (sets it when given), as torch.backends.cudnn.benchmark. */
  cudnnBenchmark(enabled?: boolean): boolean;
  /** bf16 arithmetic in this CPU (cpuid, with the OS's register state): `bf16` = either. */
  cpuFeatures(): { avx512f: boolean; avx512bf16: boolean; amxbf16: boolean; bf16: boolean };
  getThreads(): number;
  setThreads(n: number): void;
  /** Whether Conv blocks use the fused BatchNorm + SiLU CPU kernel (sets it when given). */
  fusedBatchNorm(enabled?: boolean): boolean;
  loadTensorFile(file: string): Promise<NamedTensor[]>;
  setJpegLibrary(path: string): string;
  matmulGflops(n?: number, repeats?: number): number;
  buildInfo(): {
    libtorch: string;
    cxx11abi?: boolean;
    napi: number;
    cudaLinked: boolean;
    /** The LibTorch library file this process runs (where the dynamic linker found it). */
    libtorchFile?: string;
  };
  jpegLibrary(): string;
  /** The native bytes this addon has told V8 about, over all live models and trainers (see README). */
  externalMemory(): number;
  /**
   * Data-set verification per image: its size, or why it is unusable (unreadable, more than
   * 178,956,970 pixels). `restored`: a JPEG without its end marker whose decodable part is used.
   */
  imageInfo(
    paths: string[],
  ): Promise<({ width: number; height: number; restored?: string } | { error: string })[]>;
  drawDetections(
    image: NativeImage,
    boxes: NativeDrawBox[],
    options: {
      lineWidth?: number;
      output?: string;
      format?: 'jpg' | 'png' | 'bmp';
      crops?: { index: number; path: string }[];
    },
  ): Promise<Uint8Array | undefined>;
}

let addon: NativeAddon | undefined;
let loadError: Error | undefined;
let origin: AddonChoice | undefined;

/** Which binary was loaded, and the LibTorch chosen for it (after `native()` succeeded). */
export function addonOrigin(): AddonChoice | undefined {
  return origin;
}

/**
 * Loads shared libraries globally before the addon, through the small helper built beside it
 * (binding/preload), so the addon's torch libraries resolve to a LibTorch outside the dynamic
 * linker's search path.
 */
function preload(addonFile: string, libs: string[]): void {
  if (libs.length === 0) return;
  const helper = path.join(path.dirname(addonFile), 'preload', 'yolo5_preload.node');
  if (!fs.existsSync(helper)) {
    throw new Yolo5Error(
      'E_NATIVE',
      `${helper} is missing, so ${libs[0]} and the rest of that LibTorch cannot be loaded ahead of the addon; ` +
        `set LD_LIBRARY_PATH=${path.dirname(libs[0]!)} instead, or rebuild with \`npx yolo5 build\`.`,
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const loader = require(helper) as { load(file: string): void };
  for (const lib of libs) loader.load(lib);
}

/** The Debian/Ubuntu packages a source build needs (also in scripts/install.js, CMakeLists.txt, setup.sh). */
export const BUILD_PACKAGES = 'libtorch-dev cmake g++ make libstb-dev';

/**
 * For a process that does little but train or infer (the CLI, the benchmarks), before the addon
 * loads: OpenMP threads spin for up to 300,000 rounds after each parallel region before they
 * sleep (OMP_WAIT_POLICY=ACTIVE with GOMP_SPINCOUNT=300000, libgomp's own default when nothing
 * is set), instead of the library's passive waiting, which keeps a service's event loop on its
 * core but wakes a sleeping thread for each of a step's thousands of parallel regions: measured
 * 7–17% faster training steps here (yolov5n 256 px, 2 cores; scripts/bench). The user's own
 * OMP_WAIT_POLICY wins; once the addon has loaded this changes nothing (libgomp read them then).
 */
export function preferSpinningThreads(): void {
  if (addon || process.env.OMP_WAIT_POLICY !== undefined) return;
  process.env.OMP_WAIT_POLICY = 'ACTIVE';
  process.env.GOMP_SPINCOUNT ??= '300000';
}

/** The addon, loaded on first use; throws one actionable Yolo5Error when it cannot load. */
export function native(): NativeAddon {
  if (addon) return addon;
  if (loadError) throw loadError;
  const root = packageRoot();
  // OpenMP threads that spin after each parallel region steal the CPU from Node's main thread
  // (event-loop lag on small machines); passive waiting gives it back. Read when libgomp loads.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
  let choice: AddonChoice | undefined;
  try {
    // Which binary, which LibTorch (a prebuilt binary's version is checked against its manifest).
    choice = chooseAddon(currentEnvironment(root));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const file =
      choice.file || (require('node-gyp-build') as { path(dir: string): string }).path(root);
    choice = { ...choice, file };
    preload(file, choice.preload);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(file) as NativeAddon;
    origin = choice;
    useTurboJpeg(addon);
    // LibTorch may start with a single intra-op thread: use every core unless told otherwise.
    const threads = Number(
      process.env.YOLO5_THREADS ?? process.env.OMP_NUM_THREADS ?? os.availableParallelism(),
    );
    if (Number.isInteger(threads) && threads >= 1) addon.setThreads(threads);
    // YOLO5_FUSED_BN=0: plain LibTorch BatchNorm and activation (for comparisons).
    if (process.env.YOLO5_FUSED_BN === '0') addon.fusedBatchNorm(false);
    return addon;
  } catch (e) {
    if (e instanceof Yolo5Error) {
      loadError = e;
      throw e;
    }
    const message = e instanceof Error ? e.message : String(e);
    const m = choice?.manifest;
    const needs = m
      ? ` The prebuilt binary was built against LibTorch ${m.libtorch} (${m.cuda ? 'CUDA' : 'CPU'}` +
        `${m.cxx11abi === null ? '' : `, C++11 ABI ${m.cxx11abi ? 'on' : 'off'}`})` +
        (choice?.libtorch
          ? `; the LibTorch used was at ${choice.libtorch.libDir} (${choice.libtorch.source}).`
          : '.') +
        ' Point LIBTORCH at a matching LibTorch, or build for yours with `npx yolo5 build`.'
      : '';
    loadError = new Yolo5Error(
      'E_NATIVE',
      `The native addon could not be loaded from ${choice?.file || root} (${message.split('\n')[0]}).${needs} ` +
        `To build it: \`npx yolo5 build\` (needs LibTorch, CMake, a C++17 compiler and the stb headers: Debian/Ubuntu \`apt-get install ${BUILD_PACKAGES}\`, or set ` +
        'LIBTORCH=/path/to/libtorch; scripts/setup.sh does it all in a checkout); `npx yolo5 doctor` says what is missing.',
      { cause: e },
    );
    throw loadError;
  }
}

/**
 * JPEGs decode through libjpeg-turbo (as OpenCV, and so the reference, does) when a TurboJPEG
 * library is found: YOLO5_TURBOJPEG, the one @julusian/jpeg-turbo ships, then the system's.
 * Without one the built-in decoder is used (pixels may differ by a few levels).
 */
function useTurboJpeg(a: NativeAddon): void {
  const candidates: string[] = [];
  if (process.env.YOLO5_TURBOJPEG) candidates.push(process.env.YOLO5_TURBOJPEG);
  try {
    const pkg = require.resolve('@julusian/jpeg-turbo/package.json');
    const libc = isMusl() ? '-musl' : '';
    candidates.push(
      path.join(
        path.dirname(pkg),
        'prebuilds',
        `jpeg-turbo-${process.platform}-${process.arch}${libc}`,
        'libturbojpeg.so.0',
      ),
    );
  } catch {
    // not installed: fall through to the system library
  }
  candidates.push('libturbojpeg.so.0');
  for (const c of candidates) {
    if (c.includes(path.sep) && !fs.existsSync(c)) continue;
    if (a.setJpegLibrary(c) === '') return;
  }
}

function isMusl(): boolean {
  const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
  return process.platform === 'linux' && !report.header?.glibcVersionRuntime;
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
    const err = nativeError(what, e);
    err.stack = `Yolo5Error: ${err.message}\n${(stack.stack ?? '').split('\n').slice(1).join('\n')}`;
    throw err;
  }
}

/** A synchronous native call, its errors as Yolo5Errors (E_DISPOSED and E_BUSY keep their code). */
export function nativeSync<T>(what: string, call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw nativeError(what, e);
  }
}

const NATIVE_CODES: ReadonlySet<string> = new Set(['E_DISPOSED', 'E_BUSY']);

function nativeError(what: string, e: unknown): Yolo5Error {
  if (e instanceof Yolo5Error) return e;
  const raw = (e as { code?: unknown } | null)?.code;
  // Distributed failures (binding/train/dist.h) start "DDP rank R of N (store ADDR:PORT)".
  const dist = e instanceof Error && /^DDP rank \d+/.test(e.message);
  const code =
    typeof raw === 'string' && NATIVE_CODES.has(raw)
      ? (raw as Yolo5ErrorCode)
      : dist
        ? 'E_DIST'
        : 'E_NATIVE';
  const message = e instanceof Error ? e.message : String(e);
  // A distributed failure names its rank and store itself.
  return new Yolo5Error(code, dist ? message : `${what}: ${message}`, {
    cause: e,
  });
}

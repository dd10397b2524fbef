/// <reference types="node" preserve="true" />
/**
 * `Model`: one native YOLOv5 model and what TypeScript may ask of it. Built from a yaml config
 * (a file, a bundled name, or the config inside a checkpoint), optionally with weights.
 */
import { Yolo5Error, show } from '../errors';
import {
  checkModelConfig,
  readModelConfig,
  resolveModel,
  type ConfigSource,
  type ModelConfig,
} from '../config/model';
import { parseDevice, type DeviceSpec } from '../native/device';
import { matchFreeze, type FreezeSpec } from './freeze';
import {
  native,
  nativeCall,
  nativeSync,
  type LossHyp,
  type NativeAmp,
  type NativeImage,
  type NativeModel,
  type NativePredictOptions,
  type NativeStateEntry,
  type NativeTensor,
  type TypedData,
} from '../native/addon';
import { readWeights, type WeightsFile } from './weights';
import type { HostTensor } from '../checkpoint';
import { writeCheckpointAsync } from '../checkpoint/worker';
import { pruneModel, type PruneResult } from './prune';

export interface LoadModelOptions {
  /** A model yaml path, a bundled config name (`yolov5s`, `yolov5s.yaml`), or a parsed config. */
  cfg?: string | ModelConfig;
  /** Number of classes; overrides the config's `nc`. */
  nc?: number;
  /** Input channels; overrides the config's `ch` (default 3). */
  ch?: number;
  /**
   * A checkpoint or state-dict file. Without `cfg` the model is the checkpoint's own and every
   * tensor must load; with `cfg` (or a different `nc`) the tensors whose name and shape match
   * are transferred and the rest keep their fresh initialisation.
   */
  weights?: string;
  /** Class names (default: the checkpoint's, else "0", "1", …). */
  names?: string[];
  /**
   * Anchors per level: replaces the config's anchors with that many placeholders (the hyp key
   * `anchors`; autoanchor then computes them). The weights' anchors are not transferred, and the
   * head transfers only where its shape still fits.
   */
  anchors?: number;
  /** Where the model runs: 'cpu' (default), a CUDA index (0) or 'cuda:N'. */
  device?: DeviceSpec;
  /**
   * Every tensor of the model must come from `weights`, each of the right shape, and the file may
   * hold no others, else E_WEIGHTS naming them (val and detect: inference on freshly initialised
   * tensors is never intended). Default: strict only without `cfg`, `anchors` or a different `nc`;
   * otherwise tensors that do not fit keep their fresh initialisation and are listed in a warning.
   */
  strict?: boolean;
  /** Receives informational lines (default: none). */
  log?: (line: string) => void;
}

export interface ParameterInfo {
  name: string;
  shape: number[];
  numel: number;
  requiresGrad: boolean;
}

export type StateEntryInfo = NativeStateEntry;

export interface ModelInfo {
  /** Module count as the reference's summary counts it (shared activation once). */
  layers: number;
  parameters: number;
  /** Parameters that train (requires_grad). */
  gradients: number;
  /** GFLOPs of one 640×640 forward. */
  gflops: number;
  /** The same per layer (`model.{i}`); they add up to `gflops`. */
  layerGflops: number[];
  nc: number;
  stride: number[];
  /** Anchors in grid units, (levels, anchors, 2). */
  anchors: number[][][];
  fused: boolean;
}

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export interface ForwardResult {
  /** Eval mode: (batch, Σ anchors·cells, 5 + nc) as cx, cy, w, h, obj, classes in input pixels. */
  output?: Tensor;
  /** Raw head outputs per level, (batch, anchors, ny, nx, 5 + nc). */
  raw: Tensor[];
}

export interface TransferReport {
  file: string;
  transferred: number;
  total: number;
  missing: string[];
  unexpected: string[];
  mismatched: string[];
}

interface TransferOptions {
  strict: boolean;
  /** Index of the Detect layer (`model.{detect}`). */
  detect: number;
  nc: number;
  /** The anchors were replaced (hyp `anchors`): the file's anchors are not loaded. */
  anchors: boolean;
  log: (line: string) => void;
}

/**
 * Loads the tensors of `weights` whose name and shape match, then says what did not fit: an
 * E_WEIGHTS error when strict, else one warning naming each tensor (a Detect head left fresh by
 * another nc or anchor count is said in one line, as it is intended).
 */
async function transferWeights(
  handle: NativeModel,
  weights: WeightsFile,
  o: TransferOptions,
): Promise<TransferReport> {
  const anchorsName = `model.${o.detect}.anchors`;
  const tensors = weights.tensors.filter((t) => !o.anchors || t.name !== anchorsName);
  const report = await nativeCall(`loading ${weights.file}`, () =>
    handle.loadState(tensors.map((t) => ({ name: t.name, shape: t.shape, data: t.data }))),
  );
  const entries = handle.stateEntries();
  const total = entries.length;
  const transfer = { file: weights.file, transferred: report.loaded, total, ...report };
  const expected = new Map(entries.map((e) => [e.name, e.shape]));
  const got = new Map(tensors.map((t) => [t.name, t.shape]));
  const misfits = describeMisfits(report, expected, got);
  if (o.strict && misfits.length > 0) {
    throw new Yolo5Error(
      'E_WEIGHTS',
      `${weights.file} does not fit the model: ${listSome(misfits, 6)}`,
      { file: weights.file },
    );
  }
  if (report.loaded === 0) {
    throw new Yolo5Error(
      'E_WEIGHTS',
      `${weights.file}: no tensor matches this model by name and shape`,
      { file: weights.file },
    );
  }
  o.log(`Transferred ${report.loaded}/${total} items from ${weights.file}`);
  // Another nc or anchor count changes only the outputs (dim 0) of Detect's convs: intended.
  const head = `model.${o.detect}.m.`;
  const outputsOnly = (n: string) => {
    const [e, g] = [expected.get(n) ?? [], got.get(n) ?? []];
    return e.length === g.length && e.every((v, i) => i === 0 || v === g[i]);
  };
  const fresh = (n: string) =>
    (o.anchors && n === anchorsName) ||
    (n.startsWith(head) && report.mismatched.includes(n) && outputsOnly(n));
  const other = misfits.filter((m) => !fresh(m.name));
  if (misfits.some((m) => m.name.startsWith(head) && fresh(m.name))) {
    const e = expected.get(`${head}0.weight`)?.[0] ?? 0;
    const g = got.get(`${head}0.weight`)?.[0] ?? 0;
    const ncw = g / (e / (o.nc + 5)) - 5;
    const why = o.anchors
      ? 'its anchors were replaced'
      : Number.isInteger(ncw)
        ? `the weights are for nc=${ncw}, the model has nc=${o.nc}`
        : `its outputs in the weights have another size`;
    o.log(`Detect head ${head.slice(0, -1)} starts fresh: ${why}`);
  }
  if (other.length > 0)
    o.log(
      `WARNING: ${other.length} tensors of ${weights.file} not transferred (fresh initialisation kept): ${listSome(other, 10)}`,
    );
  return transfer;
}

interface Misfit {
  name: string;
  text: string;
}

/** Each tensor that did not load, in words: name, the model's shape, the file's shape. */
function describeMisfits(
  report: { missing: string[]; unexpected: string[]; mismatched: string[] },
  expected: Map<string, number[]>,
  got: Map<string, number[]>,
): Misfit[] {
  const shape = (s: number[] | undefined) => `[${(s ?? []).join(', ')}]`;
  return [
    ...report.mismatched.map((name) => ({
      name,
      text: `${name} is ${shape(got.get(name))} in the file but ${shape(expected.get(name))} in the model`,
    })),
    ...report.missing.map((name) => ({
      name,
      text: `${name} ${shape(expected.get(name))} is missing`,
    })),
    ...report.unexpected.map((name) => ({
      name,
      text: `${name} ${shape(got.get(name))} is not in the model`,
    })),
  ];
}

/** The first `n` of a list joined with "; ", and how many more. */
function listSome(items: Misfit[], n: number): string {
  const more = items.length > n ? `; … and ${items.length - n} more` : '';
  return `${items
    .slice(0, n)
    .map((m) => m.text)
    .join('; ')}${more}`;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function asFloat32(t: NativeTensor): Tensor {
  if (!(t.data instanceof Float32Array))
    throw new Yolo5Error('E_NATIVE', 'expected a float32 tensor');
  return { shape: t.shape, data: t.data };
}

export class Model {
  readonly #native: NativeModel;
  /** The model config as written (yaml), with `nc` as built. */
  readonly config: ModelConfig;
  readonly source: ConfigSource;
  readonly nc: number;
  readonly names: string[];
  /** Number of rows (`model.0` … `model.{layerCount-1}`). */
  readonly layerCount: number;
  /** Set when the model was loaded with weights. */
  readonly transfer?: TransferReport;
  #device = 'cpu';
  #disposed = false;

  private constructor(
    handle: NativeModel,
    config: ModelConfig,
    source: ConfigSource,
    nc: number,
    names: string[],
    transfer?: TransferReport,
  ) {
    this.#native = handle;
    this.config = { ...config, nc };
    this.source = source;
    this.nc = nc;
    this.names = names;
    this.layerCount = config.backbone.length + config.head.length;
    if (transfer) this.transfer = transfer;
  }

  /** The native handle; after dispose() every use is an E_DISPOSED error. */
  #live(): NativeModel {
    if (this.#disposed) {
      throw new Yolo5Error(
        'E_DISPOSED',
        'This model was disposed (Model.dispose()): load it again to use it',
      );
    }
    return this.#native;
  }

  /**
   * Frees the native model (weights, buffers) without waiting for the garbage collector; every
   * later call is an E_DISPOSED error. Calls already running complete first (the memory goes
   * when the last one has), and a trainer built on this model is disposed with it. A second
   * dispose() does nothing.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#native.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The device the model's tensors are on: 'cpu' or 'cuda:N'. */
  get device(): string {
    return this.#device;
  }

  /** Moves the model to a device ('cpu', a CUDA index such as 0, 'cuda:1'). */
  async to(device: DeviceSpec): Promise<this> {
    const target = parseDevice(device);
    this.#device = await nativeCall(`moving the model to ${target}`, () => this.#live().to(target));
    return this;
  }

  /** @internal Use `loadModel`. */
  static async create(opts: LoadModelOptions): Promise<Model> {
    const log = opts.log ?? (() => {});
    // A bad device fails before any work.
    const device = parseDevice(opts.device);
    let weights: WeightsFile | undefined;
    if (opts.weights !== undefined) weights = await readWeights(opts.weights);

    let config: ModelConfig;
    let source: ConfigSource;
    if (typeof opts.cfg === 'string') {
      ({ config, source } = readModelConfig(opts.cfg));
    } else if (opts.cfg !== undefined) {
      source = { file: '<config object>' };
      config = checkModelConfig(opts.cfg, source);
    } else if (weights?.yaml !== undefined) {
      source = { file: `${weights.file} (model yaml)` };
      config = checkModelConfig(weights.yaml, source);
    } else if (weights !== undefined) {
      throw new Yolo5Error(
        'E_ARG',
        `${weights.file} holds no model config (a plain state dict): pass cfg as well`,
        { file: weights.file },
      );
    } else {
      throw new Yolo5Error('E_ARG', 'loadModel needs cfg (a model yaml) or weights (a checkpoint)');
    }
    if (opts.anchors !== undefined) {
      const na = Math.round(opts.anchors);
      if (!Number.isFinite(opts.anchors) || na < 1) {
        throw new Yolo5Error(
          'E_ARG',
          `Expected number >= 1 for anchors but received ${show(opts.anchors)}`,
          { value: opts.anchors },
        );
      }
      config = { ...config, anchors: na };
    }
    const nc = opts.nc ?? (opts.cfg === undefined ? weights?.nc : undefined) ?? config.nc;
    if (nc !== config.nc) log(`Overriding model yaml nc=${config.nc} with nc=${nc}`);
    const resolved = resolveModel(config, source, {
      nc,
      ...(opts.ch !== undefined ? { ch: opts.ch } : {}),
    });
    const handle = await nativeCall('building the model', () =>
      native().createModel(resolved.spec),
    );

    let names = opts.names ?? weights?.names ?? Array.from({ length: nc }, (_, i) => String(i));
    if (names.length !== nc) {
      if (opts.names !== undefined) {
        throw new Yolo5Error('E_ARG', `Expected ${nc} class names but received ${names.length}`, {
          value: names,
        });
      }
      names = Array.from({ length: nc }, (_, i) => String(i));
    }

    let transfer: TransferReport | undefined;
    if (weights !== undefined) {
      // Without a config or class/anchor override the file is the model: every tensor must fit.
      const strict =
        opts.strict ??
        (opts.cfg === undefined && opts.anchors === undefined && nc === (weights.nc ?? nc));
      transfer = await transferWeights(handle, weights, {
        strict,
        detect: config.backbone.length + config.head.length - 1,
        nc,
        anchors: opts.anchors !== undefined,
        log,
      });
    }
    const model = new Model(handle, config, source, nc, names, transfer);
    if (device !== 'cpu') await model.to(device);
    return model;
  }

  /** Parameters in PyTorch order with the PyTorch names (`model.0.conv.weight`, …). */
  namedParameters(): ParameterInfo[] {
    return nativeSync('namedParameters', () => this.#live().namedParameters()).map((p) => ({
      name: p.name,
      shape: p.shape,
      numel: numel(p.shape),
      requiresGrad: p.requiresGrad,
    }));
  }

  /** State-dict entries (parameters and buffers) in PyTorch order. */
  stateDict(): StateEntryInfo[] {
    return nativeSync('stateDict', () => this.#live().stateEntries());
  }

  /**
   * Freezes parameters: a count N (layers 0…N−1), a list of layer indices, or name prefixes /
   * `*` globs. Sets requires_grad=false on each match and returns the frozen names.
   */
  freeze(spec: FreezeSpec): string[] {
    const names = matchFreeze(
      spec,
      this.namedParameters().map((p) => p.name),
      this.layerCount,
    );
    nativeSync('freeze', () => this.#live().setRequiresGrad(names, false));
    return names;
  }

  /** Makes every parameter trainable again. */
  unfreeze(): void {
    const names = this.namedParameters().map((p) => p.name);
    nativeSync('unfreeze', () => this.#live().setRequiresGrad(names, true));
  }

  /** Runs the model on a (batch, channels, height, width) float32 input, off the event loop. */
  async forward(
    input: Float32Array,
    shape: readonly number[],
    opts: { train?: boolean; amp?: NativeAmp } = {},
  ): Promise<ForwardResult> {
    if (shape.length !== 4 || numel(shape) !== input.length) {
      throw new Yolo5Error(
        'E_ARG',
        `Expected input of shape (batch, channels, height, width) holding ${input.length} values but received shape ${show(shape)}`,
        { value: shape },
      );
    }
    const stride = Math.max(...this.info().stride);
    if (shape[2]! % stride !== 0 || shape[3]! % stride !== 0) {
      throw new Yolo5Error(
        'E_ARG',
        `Expected height and width that are multiples of ${stride} but received ${shape[2]}×${shape[3]}`,
        { value: shape },
      );
    }
    const r = await nativeCall('forward', () =>
      this.#live().forward(input, [...shape], {
        train: opts.train === true,
        ...(opts.amp ? { amp: opts.amp } : {}),
      }),
    );
    return { ...(r.output ? { output: asFloat32(r.output) } : {}), raw: r.raw.map(asFloat32) };
  }

  info(): ModelInfo {
    const i = nativeSync('info', () => this.#live().info());
    const a = i.anchors;
    const [nl, na] = a.shape as [number, number, number];
    const data = a.data as Float32Array;
    const anchors = Array.from({ length: nl }, (_, l) =>
      Array.from({ length: na }, (_, k) => [data[(l * na + k) * 2]!, data[(l * na + k) * 2 + 1]!]),
    );
    return {
      layers: i.layers,
      parameters: i.parameters,
      gradients: i.gradients,
      gflops: i.gflops,
      layerGflops: i.layerGflops,
      nc: i.nc,
      stride: i.stride,
      anchors,
      fused: i.fused,
    };
  }

  /** Copies tensors in by name; returns what matched. */
  async loadState(entries: { name: string; shape: number[]; data: TypedData }[]) {
    return nativeCall('loading state', () => this.#live().loadState(entries));
  }

  /** Every state tensor (copies), in state-dict order. */
  async getState(): Promise<{ name: string; shape: number[]; dtype: string; data: TypedData }[]> {
    return nativeCall('reading state', () => this.#live().getState());
  }

  /**
   * Low-level inference: letterbox, forward, NMS for each image, boxes (x1 y1 x2 y2 conf cls) in
   * source pixels. `detect` and `val` are built on it.
   */
  async predict(images: NativeImage[], opts: NativePredictOptions) {
    return nativeCall('predict', () => this.#live().predict(images, opts));
  }

  /**
   * The YOLOv5 loss of one batch. `targets` rows are image, class, cx, cy, w, h (normalised);
   * `hyp` holds the gains already scaled for levels, classes and image size. In train mode
   * (default) BatchNorm uses batch statistics (and updates its running statistics, as a training
   * step does) and the gradient norms of `gradNames` are returned; gradients are then cleared.
   * `amp` ('bf16', 'fp16'): the forward under autocast, the loss on fp32 predictions.
   */
  async loss(
    input: Float32Array,
    shape: readonly number[],
    targets: Float32Array,
    hyp: LossHyp,
    opts: { train?: boolean; gradNames?: string[]; channelsLast?: boolean; amp?: NativeAmp } = {},
  ) {
    const options = {
      train: opts.train ?? true,
      gradNames: opts.gradNames ?? [],
      channelsLast: opts.channelsLast ?? false,
      ...(opts.amp ? { amp: opts.amp } : {}),
    };
    return nativeCall('loss', () => this.#live().loss(input, [...shape], targets, hyp, options));
  }

  /**
   * Saves the weights as a yolo5 checkpoint (a PyTorch zip of plain data that Python's torch.load
   * opens): state dict by PyTorch names, yaml, names. `half` stores float16 like final YOLOv5
   * weights.
   */
  async save(file: string, opts: { half?: boolean } = {}): Promise<void> {
    const state = new Map<string, HostTensor>();
    for (const t of await this.getState()) {
      if (t.data instanceof Float32Array)
        state.set(t.name, { dtype: 'float32', shape: t.shape, data: t.data });
      else if (t.data instanceof BigInt64Array)
        state.set(t.name, { dtype: 'int64', shape: t.shape, data: t.data });
      else throw new Yolo5Error('E_NATIVE', `${t.name}: unexpected dtype ${t.dtype}`);
    }
    await writeCheckpointAsync(
      file,
      {
        model: state,
        ema: null,
        epoch: -1,
        yaml: this.config,
        names: this.names,
        nc: this.nc,
        stride: this.info().stride,
      },
      { half: opts.half === true },
    );
  }

  /** A copy with the same config and weights (a separate native model). */
  async clone(): Promise<Model> {
    const handle = await nativeCall('cloning the model', () => this.#live().clone());
    const copy = new Model(handle, this.config, this.source, this.nc, this.names);
    copy.#device = this.#device; // the native clone stays on the same device
    return copy;
  }

  /** @internal The native handle, for the trainer. */
  nativeHandle(): NativeModel {
    return this.#live();
  }

  /**
   * Global magnitude pruning: zeros the `amount` (0 < amount < 1) share of smallest |w| over all
   * Conv2d weights, permanently. Returns the sparsity reached. See lib/model/prune.ts.
   */
  async prune(amount: number): Promise<PruneResult> {
    return pruneModel(this, amount);
  }

  /** Folds each Conv's BatchNorm into its convolution for inference (irreversible). */
  async fuse(): Promise<void> {
    await nativeCall('fusing', () => this.#live().fuse());
  }
}

/**
 * Translates a resolved model spec and its weights into an ONNX graph: each block computes what
 * its native counterpart (binding/model/common.cpp, yolo.cpp) computes, with every BatchNorm folded
 * into the convolution before it, and Detect's eval-mode decode in the graph.
 */
import { Yolo5Error, show } from '../errors';
import type { NativeArg, NativeLayerSpec, NativeModelSpec } from '../native/addon';
import { FLOAT, OnnxGraph } from './onnx';

/** BatchNorm epsilon of every YOLOv5 BatchNorm (set when the model is built). */
const BN_EPS = 1e-3;
/** "To the end" for Slice. */
const END = 9223372036854775807n;

export interface StateTensor {
  shape: number[];
  data: Float32Array;
}

export interface GraphInput {
  spec: NativeModelSpec;
  state: Map<string, StateTensor>;
  /** Detect strides per level (pixels per cell). */
  stride: number[];
  /** Detect anchors per level in grid units, (levels, anchors, 2). */
  anchors: number[][][];
  nc: number;
  /** Input dims: numbers are fixed, strings name dynamic dimensions. */
  batch: number | string;
  height: number | string;
  width: number | string;
}

export interface GraphOutput {
  graph: OnnxGraph;
  inputName: string;
  outputName: string;
  outputDims: (number | string)[];
}

interface ConvParams {
  k: [number, number];
  s: [number, number];
  p?: [number, number] | undefined;
  g: number;
  d: number;
  act: boolean;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return Math.abs(a);
}

/** Positional module args with the native builder's defaults and coercions. */
class Args {
  constructor(
    readonly layer: NativeLayerSpec,
    readonly index: number,
  ) {}

  #at(i: number): NativeArg | undefined {
    return this.layer.args[i];
  }
  fail(i: number, what: string): never {
    throw new Yolo5Error(
      'E_MODEL_CFG',
      `cannot export model.${this.index} ${this.layer.module}: arg ${i} ${what}, got ${show(this.#at(i))}`,
      { row: this.index, value: this.#at(i) },
    );
  }
  integer(i: number, fallback: number): number {
    const a = this.#at(i);
    if (a === undefined || a === null) return fallback;
    if (typeof a !== 'number') this.fail(i, 'must be a number');
    return Math.trunc(a);
  }
  real(i: number, fallback: number): number {
    const a = this.#at(i);
    if (a === undefined || a === null) return fallback;
    if (typeof a !== 'number') this.fail(i, 'must be a number');
    return a;
  }
  flag(i: number, fallback: boolean): boolean {
    const a = this.#at(i);
    if (a === undefined || a === null) return fallback;
    if (typeof a === 'boolean') return a;
    if (typeof a === 'number') return a !== 0;
    this.fail(i, 'must be a bool');
  }
  pair(i: number): [number, number] | undefined {
    const a = this.#at(i);
    if (a === undefined || a === null) return undefined;
    if (typeof a === 'number') return [Math.trunc(a), Math.trunc(a)];
    if (Array.isArray(a) && a.length === 2 && a.every((v) => typeof v === 'number'))
      return [Math.trunc(a[0] as number), Math.trunc(a[1] as number)];
    this.fail(i, 'must be a number or a pair');
  }
  ints(i: number, fallback: number[]): number[] {
    const a = this.#at(i);
    if (a === undefined || a === null) return fallback;
    if (typeof a === 'number') return [Math.trunc(a)];
    if (Array.isArray(a) && a.every((v) => typeof v === 'number'))
      return a.map((v) => Math.trunc(v as number));
    this.fail(i, 'must be a list of numbers');
  }
  string(i: number): string | undefined {
    const a = this.#at(i);
    return typeof a === 'string' ? a : undefined;
  }
}

class Builder {
  readonly g = new OnnxGraph();
  readonly #used = new Set<string>();

  constructor(
    readonly input: GraphInput,
    readonly activation: { kind: string; slope?: number },
  ) {}

  tensor(name: string): StateTensor {
    const t = this.input.state.get(name);
    if (t === undefined)
      throw new Yolo5Error('E_WEIGHTS', `cannot export: the model has no tensor ${name}`);
    this.#used.add(name);
    return t;
  }

  has(name: string): boolean {
    return this.input.state.has(name);
  }

  unusedWeights(): string[] {
    return [...this.input.state.keys()].filter(
      (k) => !this.#used.has(k) && !k.endsWith('.num_batches_tracked') && !k.endsWith('.anchors'),
    );
  }

  /** The per-channel scale and shift of an eval-mode BatchNorm, in float64. */
  bnAffine(prefix: string): { scale: Float64Array; shift: Float64Array } {
    const gamma = this.tensor(`${prefix}.weight`).data;
    const beta = this.tensor(`${prefix}.bias`).data;
    const mean = this.tensor(`${prefix}.running_mean`).data;
    const variance = this.tensor(`${prefix}.running_var`).data;
    const scale = new Float64Array(gamma.length);
    const shift = new Float64Array(gamma.length);
    for (let c = 0; c < gamma.length; c++) {
      scale[c] = gamma[c]! / Math.sqrt(variance[c]! + BN_EPS);
      shift[c] = beta[c]! - mean[c]! * scale[c]!;
    }
    return { scale, shift };
  }

  /** A Conv node; `scale`/`shift` fold a following per-channel affine map (a BatchNorm) in. */
  convNode(
    x: string,
    hint: string,
    weight: StateTensor,
    bias: Float32Array | undefined,
    p: ConvParams,
    affine?: { scale: ArrayLike<number>; shift: ArrayLike<number> },
  ): string {
    const [c2, , kh, kw] = weight.shape as [number, number, number, number];
    if (weight.shape.length !== 4 || kh !== p.k[0] || kw !== p.k[1]) {
      throw new Yolo5Error(
        'E_WEIGHTS',
        `cannot export ${hint}: weight shape [${weight.shape.join(', ')}] does not fit kernel ${p.k.join('x')}`,
      );
    }
    const per = weight.data.length / c2;
    const w = new Float32Array(weight.data.length);
    const b = new Float32Array(c2);
    for (let o = 0; o < c2; o++) {
      const sc = affine ? affine.scale[o]! : 1;
      const sh = affine ? affine.shift[o]! : 0;
      for (let j = 0; j < per; j++) w[o * per + j] = weight.data[o * per + j]! * sc;
      b[o] = (bias ? bias[o]! : 0) * sc + sh;
    }
    const autopad = (k: number) => Math.trunc((p.d > 1 ? p.d * (k - 1) + 1 : k) / 2);
    const pad = p.p ?? [autopad(p.k[0]), autopad(p.k[1])];
    return this.g.node(
      'Conv',
      [x, this.g.weight(`${hint}.weight`, weight.shape, w), this.g.weight(`${hint}.bias`, [c2], b)],
      {
        kernel_shape: p.k,
        strides: p.s,
        pads: [pad[0], pad[1], pad[0], pad[1]],
        dilations: [p.d, p.d],
        group: p.g,
      },
      hint,
    );
  }

  act(x: string, hint: string, kind = this.activation.kind): string {
    switch (kind) {
      case 'SiLU':
        return this.g.node('Mul', [x, this.g.node('Sigmoid', [x], {}, hint)], {}, hint);
      case 'ReLU':
        return this.g.node('Relu', [x], {}, hint);
      case 'LeakyReLU':
        return this.g.node(
          'LeakyRelu',
          [x],
          { alpha: { float: this.activation.slope ?? 0.01 } },
          hint,
        );
      case 'Hardswish':
        // x · clip(x/6 + 1/2, 0, 1); HardSwish itself only exists from opset 14.
        return this.g.node(
          'Mul',
          [
            x,
            this.g.node(
              'HardSigmoid',
              [x],
              { alpha: { float: 1 / 6 }, beta: { float: 0.5 } },
              hint,
            ),
          ],
          {},
          hint,
        );
      case 'Sigmoid':
        return this.g.node('Sigmoid', [x], {}, hint);
      case 'Identity':
        return x;
      default:
        throw new Yolo5Error('E_MODEL_CFG', `cannot export activation ${show(kind)}`);
    }
  }

  /** Conv (conv → bn → act) at `prefix`; also takes a fused one (conv with bias, no bn). */
  conv(x: string, prefix: string, p: ConvParams): string {
    const weight = this.tensor(`${prefix}.conv.weight`);
    let y: string;
    if (this.has(`${prefix}.bn.weight`)) {
      y = this.convNode(x, `${prefix}.conv`, weight, undefined, p, this.bnAffine(`${prefix}.bn`));
    } else {
      y = this.convNode(x, `${prefix}.conv`, weight, this.tensor(`${prefix}.conv.bias`).data, p);
    }
    return p.act ? this.act(y, prefix) : y;
  }

  simpleConv(x: string, prefix: string, k: number, s = 1, g = 1, act = true): string {
    return this.conv(x, prefix, { k: [k, k], s: [s, s], g, d: 1, act });
  }

  concat(xs: string[], axis: number, hint: string): string {
    return this.g.node('Concat', xs, { axis }, hint);
  }

  add(a: string, b: string, hint: string): string {
    return this.g.node('Add', [a, b], {}, hint);
  }

  maxPool(x: string, k: number, hint: string): string {
    const p = Math.trunc(k / 2);
    return this.g.node(
      'MaxPool',
      [x],
      { kernel_shape: [k, k], strides: [1, 1], pads: [p, p, p, p] },
      hint,
    );
  }

  slice(
    x: string,
    starts: (number | bigint)[],
    ends: (number | bigint)[],
    axes: number[],
    steps: number[],
    hint: string,
  ): string {
    return this.g.node(
      'Slice',
      [x, this.g.ints(starts), this.g.ints(ends), this.g.ints(axes), this.g.ints(steps)],
      {},
      hint,
    );
  }

  // --- blocks (the same computation as binding/model/common.cpp) ---------------------------

  bottleneck(
    x: string,
    prefix: string,
    c1: number,
    c2: number,
    shortcut: boolean,
    g: number,
  ): string {
    const y = this.simpleConv(this.simpleConv(x, `${prefix}.cv1`, 1), `${prefix}.cv2`, 3, 1, g);
    return shortcut && c1 === c2 ? this.add(x, y, prefix) : y;
  }

  crossConv(
    x: string,
    prefix: string,
    c1: number,
    c2: number,
    k: number,
    s: number,
    g: number,
    shortcut: boolean,
  ): string {
    const a = this.conv(x, `${prefix}.cv1`, { k: [1, k], s: [1, s], g: 1, d: 1, act: true });
    const y = this.conv(a, `${prefix}.cv2`, { k: [k, 1], s: [s, 1], g, d: 1, act: true });
    return shortcut && c1 === c2 ? this.add(x, y, prefix) : y;
  }

  ghostConv(
    x: string,
    prefix: string,
    c2: number,
    k: number,
    s: number,
    g: number,
    act: boolean,
  ): string {
    const c = Math.trunc(c2 / 2);
    const y = this.simpleConv(x, `${prefix}.cv1`, k, s, g, act);
    return this.concat([y, this.simpleConv(y, `${prefix}.cv2`, 5, 1, c, act)], 1, prefix);
  }

  ghostBottleneck(x: string, prefix: string, c1: number, c2: number, k: number, s: number): string {
    const c = Math.trunc(c2 / 2);
    let y = this.ghostConv(x, `${prefix}.conv.0`, c, 1, 1, 1, true);
    if (s === 2) y = this.simpleConv(y, `${prefix}.conv.1`, k, s, gcd(c, c), false);
    y = this.ghostConv(y, `${prefix}.conv.2`, c2, 1, 1, 1, false);
    let short = x;
    if (s === 2) {
      short = this.simpleConv(x, `${prefix}.shortcut.0`, k, s, gcd(c1, c1), false);
      short = this.simpleConv(short, `${prefix}.shortcut.1`, 1, 1, 1, false);
    }
    return this.add(y, short, prefix);
  }

  c3(x: string, prefix: string, module: string, a: Args): string {
    const c2 = a.integer(1, 0);
    const n = a.integer(2, 1);
    const shortcut = a.flag(3, true);
    const g = a.integer(4, 1);
    const c = Math.trunc(c2 * a.real(5, 0.5));
    let y = this.simpleConv(x, `${prefix}.cv1`, 1);
    for (let i = 0; i < n; i++) {
      const p = `${prefix}.m.${i}`;
      if (module === 'C3') y = this.bottleneck(y, p, c, c, shortcut, g);
      else if (module === 'C3x') y = this.crossConv(y, p, c, c, 3, 1, g, shortcut);
      else y = this.ghostBottleneck(y, p, c, c, 3, 1);
    }
    const cat = this.concat([y, this.simpleConv(x, `${prefix}.cv2`, 1)], 1, prefix);
    return this.simpleConv(cat, `${prefix}.cv3`, 1);
  }

  bottleneckCSP(x: string, prefix: string, a: Args): string {
    const c2 = a.integer(1, 0);
    const n = a.integer(2, 1);
    const shortcut = a.flag(3, true);
    const g = a.integer(4, 1);
    const c = Math.trunc(c2 * a.real(5, 0.5));
    let y = this.simpleConv(x, `${prefix}.cv1`, 1);
    for (let i = 0; i < n; i++) y = this.bottleneck(y, `${prefix}.m.${i}`, c, c, shortcut, g);
    // The BatchNorm after the concat splits per channel: the first c channels come from cv3, the
    // rest from cv2, so it folds into those two bias-free convolutions.
    const bn = this.bnAffine(`${prefix}.bn`);
    const one: ConvParams = { k: [1, 1], s: [1, 1], g: 1, d: 1, act: false };
    const y1 = this.convNode(
      y,
      `${prefix}.cv3`,
      this.tensor(`${prefix}.cv3.weight`),
      undefined,
      one,
      {
        scale: bn.scale.subarray(0, c),
        shift: bn.shift.subarray(0, c),
      },
    );
    const y2 = this.convNode(
      x,
      `${prefix}.cv2`,
      this.tensor(`${prefix}.cv2.weight`),
      undefined,
      one,
      {
        scale: bn.scale.subarray(c),
        shift: bn.shift.subarray(c),
      },
    );
    // Its activation is SiLU whatever the model's default is (as in the native block).
    const z = this.act(this.concat([y1, y2], 1, prefix), prefix, 'SiLU');
    return this.simpleConv(z, `${prefix}.cv4`, 1);
  }

  focus(x: string, prefix: string, a: Args): string {
    // Space-to-depth: (even, even), (odd, even), (even, odd), (odd, odd) rows/columns.
    const parts = [
      [0, 0],
      [1, 0],
      [0, 1],
      [1, 1],
    ].map(([r, c]) => this.slice(x, [r!, c!], [END, END], [2, 3], [2, 2], prefix));
    return this.conv(this.concat(parts, 1, prefix), `${prefix}.conv`, {
      k: a.pair(2) ?? [1, 1],
      s: a.pair(3) ?? [1, 1],
      p: a.pair(4),
      g: a.integer(5, 1),
      d: 1,
      act: a.flag(6, true),
    });
  }

  upsample(x: string, prefix: string, a: Args): string {
    const scale = a.real(1, 2.0);
    const mode = a.string(2) ?? 'nearest';
    const scales = this.g.floats([1, 1, scale, scale]);
    // Resize takes an roi input before scales; it is unused by these modes and may be empty.
    const roi = this.g.floats([], [0], 'roi');
    if (mode === 'nearest') {
      // PyTorch's nearest: source index = floor(destination / scale).
      return this.g.node(
        'Resize',
        [x, roi, scales],
        { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' },
        prefix,
      );
    }
    if (mode === 'bilinear') {
      return this.g.node(
        'Resize',
        [x, roi, scales],
        { mode: 'linear', coordinate_transformation_mode: 'half_pixel' },
        prefix,
      );
    }
    throw new Yolo5Error(
      'E_MODEL_CFG',
      `cannot export model.${a.index} nn.Upsample with mode ${show(mode)} (nearest, bilinear)`,
      { row: a.index, value: mode },
    );
  }

  block(x: string, xs: string[], layer: NativeLayerSpec, prefix: string, index: number): string {
    const a = new Args(layer, index);
    const m = layer.module;
    const c1 = a.integer(0, 0);
    const c2 = a.integer(1, 0);
    switch (m) {
      case 'Conv':
        return this.conv(x, prefix, {
          k: a.pair(2) ?? [1, 1],
          s: a.pair(3) ?? [1, 1],
          p: a.pair(4),
          g: a.integer(5, 1),
          d: a.integer(6, 1),
          act: a.flag(7, true),
        });
      case 'DWConv':
        return this.conv(x, prefix, {
          k: a.pair(2) ?? [1, 1],
          s: a.pair(3) ?? [1, 1],
          g: gcd(c1, c2),
          d: a.integer(4, 1),
          act: a.flag(5, true),
        });
      case 'Focus':
        return this.focus(x, prefix, a);
      case 'GhostConv':
        return this.ghostConv(
          x,
          prefix,
          c2,
          a.integer(2, 1),
          a.integer(3, 1),
          a.integer(4, 1),
          a.flag(5, true),
        );
      case 'Bottleneck':
        return this.bottleneck(x, prefix, c1, c2, a.flag(2, true), a.integer(3, 1));
      case 'CrossConv':
        return this.crossConv(
          x,
          prefix,
          c1,
          c2,
          a.integer(2, 3),
          a.integer(3, 1),
          a.integer(4, 1),
          a.flag(6, false),
        );
      case 'GhostBottleneck':
        return this.ghostBottleneck(x, prefix, c1, c2, a.integer(2, 3), a.integer(3, 1));
      case 'C3':
      case 'C3x':
      case 'C3Ghost':
        return this.c3(x, prefix, m, a);
      case 'BottleneckCSP':
        return this.bottleneckCSP(x, prefix, a);
      case 'SPP': {
        const y = this.simpleConv(x, `${prefix}.cv1`, 1);
        const parts = [y, ...a.ints(2, [5, 9, 13]).map((k) => this.maxPool(y, k, prefix))];
        return this.simpleConv(this.concat(parts, 1, prefix), `${prefix}.cv2`, 1);
      }
      case 'SPPF': {
        const k = a.integer(2, 5);
        const y0 = this.simpleConv(x, `${prefix}.cv1`, 1);
        const y1 = this.maxPool(y0, k, prefix);
        const y2 = this.maxPool(y1, k, prefix);
        const y3 = this.maxPool(y2, k, prefix);
        return this.simpleConv(this.concat([y0, y1, y2, y3], 1, prefix), `${prefix}.cv2`, 1);
      }
      case 'Concat':
        return this.concat(xs, a.integer(0, 1), prefix);
      case 'nn.Upsample':
        return this.upsample(x, prefix, a);
      case 'nn.Identity':
        return x;
      default:
        throw new Yolo5Error(
          'E_MODEL_CFG',
          `cannot export module ${show(m)} (model.${index}): no ONNX translation for it`,
          { row: index, value: m },
        );
    }
  }

  // --- Detect -------------------------------------------------------------------------------

  /** The grid of one level as (ny·nx, 2) cell offsets x − 0.5, y − 0.5, built from the map's shape. */
  dynamicGrid(map: string, hint: string): string {
    const g = this.g;
    const shape = g.node('Shape', [map], {}, hint);
    const hw = this.slice(shape, [2], [4], [0], [1], hint);
    const range = (axis: number) => {
      const n = g.node('Gather', [shape, g.ints([axis], [], 'axis')], { axis: 0 }, hint);
      const r = g.node('Range', [g.ints([0], []), n, g.ints([1], [])], {}, hint);
      return g.node('Cast', [r], { to: FLOAT }, hint);
    };
    const xs = g.node('Reshape', [range(3), g.ints([1, -1])], {}, hint);
    const ys = g.node('Reshape', [range(2), g.ints([-1, 1])], {}, hint);
    const column = (v: string) =>
      g.node('Reshape', [g.node('Expand', [v, hw], {}, hint), g.ints([-1, 1])], {}, hint);
    const grid = this.concat([column(xs), column(ys)], 1, hint);
    return g.node('Sub', [grid, g.floats([0.5], [])], {}, hint);
  }

  detect(xs: string[], prefix: string): string {
    const { stride, anchors, nc } = this.input;
    const no = nc + 5;
    const na = anchors[0]!.length;
    if (xs.length !== stride.length || xs.length !== anchors.length) {
      throw new Yolo5Error(
        'E_MODEL_CFG',
        `cannot export ${prefix}: Detect has ${xs.length} inputs, ${stride.length} strides and ${anchors.length} anchor levels`,
      );
    }
    const fixed = typeof this.input.height === 'number' && typeof this.input.width === 'number';
    const g = this.g;
    const levels = xs.map((x, i) => {
      const hint = `${prefix}.${i}`;
      const w = this.tensor(`${prefix}.m.${i}.weight`);
      const b = this.tensor(`${prefix}.m.${i}.bias`);
      const one: ConvParams = { k: [1, 1], s: [1, 1], g: 1, d: 1, act: false };
      const map = this.convNode(x, `${prefix}.m.${i}`, w, b.data, one);
      // (b, na·no, ny, nx) → (b, na, no, ny·nx) → (b, na, ny·nx, no): cell order y-major, as the
      // native (b, na, ny, nx, no) view flattens.
      const cells = g.node('Reshape', [map, g.ints([0, na, no, -1])], {}, hint);
      const y = g.node(
        'Sigmoid',
        [g.node('Transpose', [cells], { perm: [0, 1, 3, 2] }, hint)],
        {},
        hint,
      );
      let grid: string;
      if (fixed) {
        const ny = (this.input.height as number) / stride[i]!;
        const nx = (this.input.width as number) / stride[i]!;
        const values = new Float32Array(ny * nx * 2);
        for (let r = 0; r < ny; r++) {
          for (let c = 0; c < nx; c++) {
            values[(r * nx + c) * 2] = c - 0.5;
            values[(r * nx + c) * 2 + 1] = r - 0.5;
          }
        }
        grid = g.weight(`${prefix}.grid.${i}`, [ny * nx, 2], values);
      } else {
        grid = this.dynamicGrid(map, `${hint}.grid`);
      }
      const two = g.floats([2], []);
      const xy = this.slice(y, [0], [2], [3], [1], hint);
      const wh = this.slice(y, [2], [4], [3], [1], hint);
      const rest = this.slice(y, [4], [END], [3], [1], hint);
      const xyOut = g.node(
        'Mul',
        [
          g.node('Add', [g.node('Mul', [xy, two], {}, hint), grid], {}, hint),
          g.floats([stride[i]!], []),
        ],
        {},
        hint,
      );
      const wh2 = g.node('Mul', [wh, two], {}, hint);
      const anchorGrid = g.weight(
        `${prefix}.anchor_grid.${i}`,
        [1, na, 1, 2],
        Float32Array.from(anchors[i]!.flat().map((v) => Math.fround(v) * stride[i]!)),
      );
      const whOut = g.node('Mul', [g.node('Mul', [wh2, wh2], {}, hint), anchorGrid], {}, hint);
      const decoded = this.concat([xyOut, whOut, rest], 3, hint);
      return g.node('Reshape', [decoded, g.ints([0, -1, no])], {}, hint);
    });
    return levels.length === 1 ? levels[0]! : this.concat(levels, 1, prefix);
  }
}

/** Builds the inference graph: input `images` (b, ch, h, w), output `output0` (b, N, 5 + nc). */
export function buildGraph(input: GraphInput): GraphOutput {
  const { spec } = input;
  const b = new Builder(input, spec.activation);
  const g = b.g;
  const inputName = g.unique('images');
  g.inputs.push({
    name: inputName,
    dataType: FLOAT,
    dims: [input.batch, spec.inChannels, input.height, input.width],
  });
  const outputs: string[] = [];
  let x = inputName;
  const last = spec.layers.length - 1;
  let result = '';
  spec.layers.forEach((layer, i) => {
    const xs = layer.from.map((f) => (f === -1 ? x : outputs[f]!));
    const prefix = `model.${i}`;
    if (i === last) {
      if (layer.module !== 'Detect')
        throw new Yolo5Error(
          'E_MODEL_CFG',
          `cannot export: the last layer is ${layer.module}, not Detect`,
        );
      result = b.detect(xs, prefix);
      return;
    }
    if (layer.module === 'Detect')
      throw new Yolo5Error(
        'E_MODEL_CFG',
        `cannot export: Detect at model.${i} is not the last layer`,
      );
    if (layer.module !== 'Concat' && xs.length !== 1)
      throw new Yolo5Error(
        'E_MODEL_CFG',
        `cannot export model.${i} ${layer.module}: it takes one input`,
      );
    let y = xs[0]!;
    if (layer.repeats > 1) {
      for (let r = 0; r < layer.repeats; r++) y = b.block(y, [y], layer, `${prefix}.${r}`, i);
    } else {
      y = b.block(y, xs, layer, prefix, i);
    }
    outputs.push(y);
    x = y;
  });
  const unused = b.unusedWeights();
  if (unused.length > 0) {
    // A weight the graph did not use means the translation and the model disagree.
    throw new Yolo5Error(
      'E_WEIGHTS',
      `cannot export: ${unused.length} model tensors have no place in the graph (${unused.slice(0, 5).join(', ')}${unused.length > 5 ? ', …' : ''})`,
    );
  }
  const outputName = g.unique('output0');
  g.nodes.push({
    op: 'Identity',
    inputs: [result],
    outputs: [outputName],
    name: '/output0/Identity',
    attrs: {},
  });
  const N =
    typeof input.height === 'number' && typeof input.width === 'number'
      ? input.stride.reduce(
          (s, st) =>
            s +
            input.anchors[0]!.length *
              ((input.height as number) / st) *
              ((input.width as number) / st),
          0,
        )
      : 'anchors';
  const outputDims = [input.batch, N, input.nc + 5];
  g.outputs.push({ name: outputName, dataType: FLOAT, dims: outputDims });
  return { graph: g, inputName, outputName, outputDims };
}

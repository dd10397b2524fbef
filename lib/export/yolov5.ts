/**
 * Export for Python YOLOv5: the checkpoint layout its detect.py, val.py and train.py --weights
 * load — `model` a pickled `models.yolo.DetectionModel` object graph (the classes, attributes and
 * module nesting of the reference's own stripped checkpoints: nn.Module state in torch 1.13's
 * layout, float16 weights, one SiLU shared by every Conv), `ema`/`optimizer` None, `epoch` -1.
 * Python opens it only with `torch.load(..., weights_only=False)` inside a YOLOv5 checkout, as it
 * opens the reference's own files; yolo5's default checkpoint stays the safe state-dict format.
 */
import { Yolo5Error, show } from '../errors';
import {
  PyCall,
  PyDict,
  PyFloat,
  PyInstance,
  PyTuple,
  toHalf,
  type HostTensor,
  type Picklable,
} from '../checkpoint';
import type { NativeArg, NativeLayerSpec } from '../native/addon';

const NN = 'torch.nn.modules';
const COMMON = 'models.common';
/** nn.Module's own attributes, in the order torch 1.13 pickles them. */
const MODULE_HOOKS = [
  '_backward_hooks',
  '_is_full_backward_hook',
  '_forward_hooks',
  '_forward_pre_hooks',
  '_state_dict_hooks',
  '_load_state_dict_pre_hooks',
  '_load_state_dict_post_hooks',
];

function ordered(entries: [string, Picklable][]): PyDict {
  const d = new PyDict(true);
  for (const [k, v] of entries) d.entries.set(k, v as never);
  return d;
}

type Attrs = [string, Picklable][];

export interface Yolov5ModelInput {
  layers: NativeLayerSpec[];
  /** The yaml rows' `from` as written (the reference keeps them so in `m.f`). */
  froms: (number | number[])[];
  activation: { kind: string; slope?: number };
  /** Every tensor by PyTorch name (float32 weights, int64 counters). */
  state: Map<string, HostTensor>;
  parameters: Set<string>;
  yaml: Record<string, unknown>;
  yamlFile: string;
  names: string[];
  stride: number[];
  hyp?: Record<string, unknown>;
}

function arg(a: NativeArg | undefined, fallback: number): number {
  return typeof a === 'number' ? a : typeof a === 'boolean' ? Number(a) : fallback;
}

function pair(a: NativeArg | undefined, fallback: number): [number, number] {
  if (Array.isArray(a)) return [arg(a[0], fallback), arg(a[1], fallback)];
  const v = arg(a, fallback);
  return [v, v];
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return Math.abs(a);
}

interface ConvSpec {
  s?: [number, number];
  p?: [number, number] | undefined;
  g?: number;
  d?: number;
  act?: boolean;
}

/** Builds the module objects from the weights, the way the reference's classes hold them. */
class Tree {
  readonly #act: PyInstance;

  constructor(readonly input: Yolov5ModelInput) {
    this.#act = this.activation(input.activation);
  }

  module(
    module: string,
    name: string,
    children: Attrs,
    extra: Attrs = [],
    params: Attrs = [],
    buffers: Attrs = [],
  ): PyInstance {
    const state: Attrs = [
      ['training', false],
      ['_parameters', ordered(params)],
      ['_buffers', ordered(buffers)],
      ['_non_persistent_buffers_set', new PyCall('__builtin__', 'set', [[]])],
      ...MODULE_HOOKS.map((h): [string, Picklable] => [
        h,
        h === '_is_full_backward_hook' ? null : ordered([]),
      ]),
      ['_modules', ordered(children)],
      ...extra,
    ];
    return new PyInstance(module, name, Object.fromEntries(state));
  }

  tensor(name: string): HostTensor {
    const t = this.input.state.get(name);
    if (!t)
      throw new Yolo5Error(
        'E_WEIGHTS',
        `cannot export for YOLOv5: the model has no tensor ${name}`,
      );
    return t.dtype === 'float32' ? toHalf(t) : t;
  }

  param(name: string): Picklable {
    return new PyCall('torch._utils', '_rebuild_parameter', [
      this.tensor(name),
      false,
      ordered([]),
    ]);
  }

  activation(a: { kind: string; slope?: number }): PyInstance {
    const [mod, attrs]: [string, Attrs] =
      a.kind === 'SiLU'
        ? ['activation', [['inplace', true]]]
        : a.kind === 'LeakyReLU'
          ? [
              'activation',
              [
                ['negative_slope', a.slope ?? 0.01],
                ['inplace', false],
              ],
            ]
          : a.kind === 'Identity'
            ? ['linear', []]
            : ['activation', a.kind === 'Sigmoid' ? [] : [['inplace', false]]];
    return this.module(`${NN}.${mod}`, a.kind, [], attrs);
  }

  conv2d(prefix: string, c: ConvSpec, bias: boolean): PyInstance {
    const w = this.input.state.get(`${prefix}.weight`);
    if (!w || w.shape.length !== 4)
      throw new Yolo5Error('E_WEIGHTS', `cannot export for YOLOv5: no 4-D ${prefix}.weight`);
    const [c2, cin, kh, kw] = w.shape as [number, number, number, number];
    const g = c.g ?? 1;
    const d = c.d ?? 1;
    const pad = c.p ?? [Math.trunc((d * (kh - 1) + 1) / 2), Math.trunc((d * (kw - 1) + 1) / 2)];
    return this.module(
      `${NN}.conv`,
      'Conv2d',
      [],
      [
        ['in_channels', cin * g],
        ['out_channels', c2],
        ['kernel_size', tuple([kh, kw])],
        ['stride', tuple(c.s ?? [1, 1])],
        ['padding', tuple(pad)],
        ['dilation', tuple([d, d])],
        ['transposed', false],
        ['output_padding', tuple([0, 0])],
        ['groups', g],
        ['padding_mode', 'zeros'],
        ['_reversed_padding_repeated_twice', tuple([pad[1], pad[1], pad[0], pad[0]])],
      ],
      [
        ['weight', this.param(`${prefix}.weight`)],
        ['bias', bias ? this.param(`${prefix}.bias`) : null],
      ],
    );
  }

  batchNorm(prefix: string): PyInstance {
    const n = this.input.state.get(`${prefix}.weight`)!.shape[0]!;
    return this.module(
      `${NN}.batchnorm`,
      'BatchNorm2d',
      [],
      [
        ['num_features', n],
        ['eps', 0.001],
        ['momentum', 0.03],
        ['affine', true],
        ['track_running_stats', true],
      ],
      [
        ['weight', this.param(`${prefix}.weight`)],
        ['bias', this.param(`${prefix}.bias`)],
      ],
      ['running_mean', 'running_var', 'num_batches_tracked'].map((b): [string, Picklable] => [
        b,
        this.tensor(`${prefix}.${b}`),
      ]),
    );
  }

  /** models.common.Conv (or a subclass name such as DWConv): conv → bn → the shared act. */
  conv(prefix: string, c: ConvSpec = {}, cls = 'Conv'): PyInstance {
    if (!this.input.state.has(`${prefix}.bn.weight`))
      throw new Yolo5Error(
        'E_ARG',
        `cannot export a fused model for YOLOv5 (${prefix} has no BatchNorm): export the unfused weights`,
      );
    const act = c.act === false ? this.module(`${NN}.linear`, 'Identity', []) : this.#act;
    return this.module(COMMON, cls, [
      ['conv', this.conv2d(`${prefix}.conv`, c, false)],
      ['bn', this.batchNorm(`${prefix}.bn`)],
      ['act', act],
    ]);
  }

  maxPool(k: number): PyInstance {
    return this.module(
      `${NN}.pooling`,
      'MaxPool2d',
      [],
      [
        ['kernel_size', k],
        ['stride', 1],
        ['padding', Math.trunc(k / 2)],
        ['dilation', 1],
        ['return_indices', false],
        ['ceil_mode', false],
      ],
    );
  }

  container(name: 'Sequential' | 'ModuleList', items: PyInstance[], extra: Attrs = []): PyInstance {
    return this.module(
      `${NN}.container`,
      name,
      items.map((m, i): [string, Picklable] => [String(i), m]),
      extra,
    );
  }
}

/** A Python tuple of ints (kernel sizes, strides, paddings). */
function tuple(v: number[]): PyTuple {
  return new PyTuple(v);
}

function bottleneck(
  t: Tree,
  p: string,
  c1: number,
  c2: number,
  shortcut: boolean,
  g: number,
): PyInstance {
  return t.module(
    COMMON,
    'Bottleneck',
    [
      ['cv1', t.conv(`${p}.cv1`)],
      ['cv2', t.conv(`${p}.cv2`, { g })],
    ],
    [['add', shortcut && c1 === c2]],
  );
}

function crossConv(
  t: Tree,
  p: string,
  c1: number,
  c2: number,
  k: number,
  s: number,
  g: number,
  shortcut: boolean,
): PyInstance {
  return t.module(
    COMMON,
    'CrossConv',
    [
      ['cv1', t.conv(`${p}.cv1`, { s: [1, s] })],
      ['cv2', t.conv(`${p}.cv2`, { s: [s, 1], g })],
    ],
    [['add', shortcut && c1 === c2]],
  );
}

function ghostConv(t: Tree, p: string, s: number, g: number, act: boolean): PyInstance {
  const c2 = t.input.state.get(`${p}.cv2.conv.weight`)!.shape[0]!;
  return t.module(COMMON, 'GhostConv', [
    ['cv1', t.conv(`${p}.cv1`, { s: [s, s], g, act })],
    ['cv2', t.conv(`${p}.cv2`, { g: c2, act })],
  ]);
}

function ghostBottleneck(t: Tree, p: string, s: number): PyInstance {
  const identity = () => t.module(`${NN}.linear`, 'Identity', []);
  const mid = (q: string) => t.input.state.get(`${q}.conv.weight`)!.shape[0]!;
  const conv = t.container('Sequential', [
    ghostConv(t, `${p}.conv.0`, 1, 1, true),
    s === 2
      ? t.conv(`${p}.conv.1`, { s: [2, 2], g: mid(`${p}.conv.1`), act: false }, 'DWConv')
      : identity(),
    ghostConv(t, `${p}.conv.2`, 1, 1, false),
  ]);
  const shortcut =
    s === 2
      ? t.container('Sequential', [
          t.conv(`${p}.shortcut.0`, { s: [2, 2], g: mid(`${p}.shortcut.0`), act: false }, 'DWConv'),
          t.conv(`${p}.shortcut.1`, { act: false }),
        ])
      : identity();
  return t.module(COMMON, 'GhostBottleneck', [
    ['conv', conv],
    ['shortcut', shortcut],
  ]);
}

/** C3, C3x, C3Ghost and BottleneckCSP: cv1…, then `m`, the repeated inner blocks. */
function csp(t: Tree, p: string, module: string, a: NativeArg[]): PyInstance {
  const c2 = arg(a[1], 0);
  const n = arg(a[2], 1);
  const shortcut = a[3] === undefined || a[3] === null ? true : Boolean(a[3]);
  const g = arg(a[4], 1);
  const c = Math.trunc(c2 * arg(a[5], 0.5));
  const inner = Array.from({ length: n }, (_, i) => {
    const q = `${p}.m.${i}`;
    if (module === 'C3x') return crossConv(t, q, c, c, 3, 1, g, shortcut);
    if (module === 'C3Ghost') return ghostBottleneck(t, q, 1);
    return bottleneck(t, q, c, c, shortcut, g);
  });
  if (module === 'BottleneckCSP') {
    return t.module(COMMON, module, [
      ['cv1', t.conv(`${p}.cv1`)],
      ['cv2', t.conv2d(`${p}.cv2`, {}, false)],
      ['cv3', t.conv2d(`${p}.cv3`, {}, false)],
      ['cv4', t.conv(`${p}.cv4`)],
      ['bn', t.batchNorm(`${p}.bn`)],
      ['act', t.activation({ kind: 'SiLU' })],
      ['m', t.container('Sequential', inner)],
    ]);
  }
  return t.module(COMMON, module, [
    ['cv1', t.conv(`${p}.cv1`)],
    ['cv2', t.conv(`${p}.cv2`)],
    ['cv3', t.conv(`${p}.cv3`)],
    ['m', t.container('Sequential', inner)],
  ]);
}

function upsample(t: Tree, a: NativeArg[]): PyInstance {
  const mode = typeof a[2] === 'string' ? a[2] : 'nearest';
  return t.module(
    `${NN}.upsampling`,
    'Upsample',
    [],
    [
      ['name', 'Upsample'],
      ['size', null],
      ['scale_factor', new PyFloat(arg(a[1], 2))],
      ['mode', mode],
      ['align_corners', null],
      ['recompute_scale_factor', null],
    ],
  );
}

function detect(t: Tree, p: string, nl: number): PyInstance {
  const anchors = t.tensor(`${p}.anchors`);
  const na = anchors.shape[1]!;
  const nc = t.input.names.length;
  const empty = () => toHalf({ dtype: 'float32', shape: [0], data: new Float32Array(0) });
  const m = t.container(
    'ModuleList',
    Array.from({ length: nl }, (_, i) => t.conv2d(`${p}.m.${i}`, {}, true)),
  );
  return t.module(
    'models.yolo',
    'Detect',
    [['m', m]],
    [
      ['nc', nc],
      ['no', nc + 5],
      ['nl', nl],
      ['na', na],
      ['grid', Array.from({ length: nl }, empty)],
      ['anchor_grid', Array.from({ length: nl }, empty)],
      ['inplace', true],
    ],
    [],
    [['anchors', anchors]],
  );
}

/** One yaml row's module (several copies in a Sequential when its number is above 1). */
function layer(t: Tree, l: NativeLayerSpec, i: number): PyInstance {
  const p = `model.${i}`;
  const a = l.args;
  const c1 = arg(a[0], 0);
  const c2 = arg(a[1], 0);
  const one = (q: string): PyInstance => {
    switch (l.module) {
      case 'Conv':
        return t.conv(q, {
          s: pair(a[3], 1),
          p: a[4] === undefined || a[4] === null ? undefined : pair(a[4], 0),
          g: arg(a[5], 1),
          d: arg(a[6], 1),
          act: a[7] === undefined ? true : Boolean(a[7]),
        });
      case 'DWConv':
        return t.conv(
          q,
          {
            s: pair(a[3], 1),
            g: gcd(c1, c2),
            d: arg(a[4], 1),
            act: a[5] === undefined ? true : Boolean(a[5]),
          },
          'DWConv',
        );
      case 'Focus':
        return t.module(COMMON, 'Focus', [
          [
            'conv',
            t.conv(`${q}.conv`, {
              s: pair(a[3], 1),
              p: a[4] === undefined || a[4] === null ? undefined : pair(a[4], 0),
              g: arg(a[5], 1),
              act: a[6] === undefined ? true : Boolean(a[6]),
            }),
          ],
        ]);
      case 'GhostConv':
        return ghostConv(
          t,
          q,
          arg(a[3], 1),
          arg(a[4], 1),
          a[5] === undefined ? true : Boolean(a[5]),
        );
      case 'Bottleneck':
        return bottleneck(t, q, c1, c2, a[2] === undefined ? true : Boolean(a[2]), arg(a[3], 1));
      case 'CrossConv':
        return crossConv(t, q, c1, c2, arg(a[2], 3), arg(a[3], 1), arg(a[4], 1), Boolean(a[6]));
      case 'GhostBottleneck':
        return ghostBottleneck(t, q, arg(a[3], 1));
      case 'C3':
      case 'C3x':
      case 'C3Ghost':
      case 'BottleneckCSP':
        return csp(t, q, l.module, a);
      case 'SPPF':
        return t.module(COMMON, 'SPPF', [
          ['cv1', t.conv(`${q}.cv1`)],
          ['cv2', t.conv(`${q}.cv2`)],
          ['m', t.maxPool(arg(a[2], 5))],
        ]);
      case 'SPP': {
        const ks = Array.isArray(a[2]) ? a[2].map((k) => arg(k, 5)) : [5, 9, 13];
        return t.module(COMMON, 'SPP', [
          ['cv1', t.conv(`${q}.cv1`)],
          ['cv2', t.conv(`${q}.cv2`)],
          [
            'm',
            t.container(
              'ModuleList',
              ks.map((k) => t.maxPool(k)),
            ),
          ],
        ]);
      }
      case 'Concat':
        return t.module(COMMON, 'Concat', [], [['d', arg(a[0], 1)]]);
      case 'nn.Upsample':
        return upsample(t, a);
      case 'nn.Identity':
        return t.module(`${NN}.linear`, 'Identity', []);
      case 'Detect':
        return detect(t, q, l.from.length);
      default:
        throw new Yolo5Error(
          'E_MODEL_CFG',
          `cannot export module ${show(l.module)} (model.${i}) for YOLOv5`,
        );
    }
  };
  return l.repeats > 1
    ? t.container(
        'Sequential',
        Array.from({ length: l.repeats }, (_, k) => one(`${p}.${k}`)),
      )
    : one(p);
}

/** The class path the reference records in each layer's `type`. */
function typeName(module: string): string {
  if (module === 'nn.Upsample') return 'torch.nn.modules.upsampling.Upsample';
  if (module === 'nn.Identity') return 'torch.nn.modules.linear.Identity';
  return module === 'Detect' ? 'models.yolo.Detect' : `${COMMON}.${module}`;
}

/** The `model` object: a DetectionModel whose `model` is the Sequential of the yaml's rows. */
export function yolov5ModelObject(input: Yolov5ModelInput): PyInstance {
  const t = new Tree(input);
  const rows: PyInstance[] = [];
  const save = new Set<number>();
  input.layers.forEach((l, i) => {
    const m = layer(t, l, i);
    const f = input.froms[i]!;
    for (const x of Array.isArray(f) ? f : [f]) if (x !== -1) save.add(((x % i) + i) % i);
    const np = [...input.parameters]
      .filter((n) => n.startsWith(`model.${i}.`))
      .reduce((s, n) => s + input.state.get(n)!.data.length, 0);
    const extra: Attrs = [
      ['i', i],
      ['f', f],
      ['type', typeName(l.module)],
      ['np', np],
    ];
    if (l.module === 'Detect')
      extra.push([
        'stride',
        toHalf({
          dtype: 'float32',
          shape: [input.stride.length],
          data: Float32Array.from(input.stride),
        }),
      ]);
    rows.push(
      new PyInstance(m.module, m.name, {
        ...(m.state as Record<string, Picklable>),
        ...Object.fromEntries(extra),
      }),
    );
  });
  const names = new Map<number, string>(input.names.map((n, i) => [i, n]));
  return t.module(
    'models.yolo',
    'DetectionModel',
    [['model', t.container('Sequential', rows)]],
    [
      ['yaml_file', input.yamlFile],
      ['yaml', input.yaml as Picklable],
      ['save', [...save].sort((a, b) => a - b)],
      ['names', names],
      ['inplace', true],
      [
        'stride',
        { dtype: 'float32', shape: [input.stride.length], data: Float32Array.from(input.stride) },
      ],
      ['nc', input.names.length],
      ...(input.hyp ? ([['hyp', input.hyp as Picklable]] as Attrs) : []),
    ],
  );
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  PyTuple,
  checkpointToBuffer,
  floatToHalf,
  halfToFloat,
  readCheckpoint,
  toFloat32,
  toHalf,
  writeCheckpoint,
} from '../lib/checkpoint';
import type { Checkpoint, HostTensor, StateDict, Yolo5CheckpointData } from '../lib/checkpoint';
import { ZipReader, crc32, zipToBuffer } from '../lib/checkpoint/zip';
import { fixture, golden, tempDir } from './helpers';

const CHECKPOINT = fixture('yolov5n-shapes5.pt');
const STATE_DICT = fixture('yolov5n-shapes5.state_dict.pt');

let cached: { pt: Checkpoint; sd: Checkpoint } | undefined;
function fixtures(): { pt: Checkpoint; sd: Checkpoint } {
  cached ??= { pt: readCheckpoint(CHECKPOINT), sd: readCheckpoint(STATE_DICT) };
  return cached;
}

function assertSameTensor(actual: HostTensor, expected: HostTensor, name: string): void {
  assert.deepEqual(actual.shape, expected.shape, `${name}: shape`);
  const a = toFloat32(actual);
  const b = toFloat32(expected);
  assert.equal(a.length, b.length, `${name}: length`);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${name}[${i}]: ${a[i]} != ${b[i]}`);
  }
}

function assertSameState(actual: StateDict, expected: StateDict): void {
  assert.deepEqual([...actual.keys()], [...expected.keys()]);
  for (const [name, tensor] of expected) {
    const got = actual.get(name)!;
    assert.equal(got.dtype, tensor.dtype, `${name}: dtype`);
    assert.deepEqual(got.shape, tensor.shape, `${name}: shape`);
    assert.deepEqual(got.data, tensor.data, `${name}: data`);
  }
}

test('the YOLOv5 fixture reads as a yolov5 checkpoint with its config, names and stride', () => {
  const { pt } = fixtures();
  const g = golden();
  assert.equal(pt.kind, 'yolov5');
  assert.equal(pt.source, CHECKPOINT);
  assert.deepEqual(pt.names, ['ellipse', 'rect', 'triangle', 'cross', 'ring']);
  assert.deepEqual(pt.yaml, g.yaml);
  assert.deepEqual(pt.stride, [8, 16, 32]);
  assert.equal(pt.nc, 5);
  assert.equal(pt.epoch, -1);
  assert.equal(pt.bestFitness, null);
  assert.equal(pt.updates, null);
  assert.equal(pt.optimizer, null);
  assert.equal(typeof pt.date, 'string');
  assert.equal(pt.opt?.['epochs'], 60);
  assert.equal(pt.hyp?.['anchor_t'], 4);
  assert.deepEqual(pt.meta['git'], { remote: null, branch: null, commit: null });
  assert.equal(pt.meta['model'], undefined, 'weights stay out of meta');
  assert.equal(pt.modelState, undefined);
});

test('the fixture weights equal the plain state dict fixture, name for name and value for value', () => {
  const { pt, sd } = fixtures();
  assert.equal(sd.kind, 'state_dict');
  assert.deepEqual([...pt.state.keys()], [...sd.state.keys()]);
  for (const [name, tensor] of pt.state) {
    const expected = sd.state.get(name)!;
    assert.equal(tensor.dtype, name.endsWith('num_batches_tracked') ? 'int64' : 'float16', name);
    assertSameTensor(tensor, expected, name);
  }
});

test('state names and shapes are the reference yolov5n names (Detect outputs 30 = 3·(5+5) channels)', () => {
  const { pt } = fixtures();
  const keys = JSON.parse(
    fs.readFileSync(fixture('yolov5-v7.0-state-keys.json'), 'utf8'),
  ) as Record<string, { state: [string, number[], string][] }>;
  const expected = keys['yolov5n-nc80']!.state.map(([name, shape]) => {
    const detect = /^model\.24\.m\.\d\.(weight|bias)$/.test(name);
    return [name, detect ? [30, ...shape.slice(1)] : shape];
  });
  const actual = [...pt.state].map(([name, t]) => [name, t.shape]);
  assert.deepEqual(actual, expected);
});

test('half floats convert exactly: subnormals, extremes, infinities and NaN', () => {
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x03ff), 1023 * 2 ** -24);
  assert.equal(halfToFloat(0x0400), 2 ** -14);
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0xc000), -2);
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.equal(halfToFloat(0xfc00), -Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) {
      assert.ok(Number.isNaN(halfToFloat(floatToHalf(halfToFloat(h)))), `NaN ${h}`);
    } else if (floatToHalf(halfToFloat(h)) !== h) {
      assert.fail(`half 0x${h.toString(16)} does not round-trip`);
    }
  }
});

test('float to half rounds to nearest, ties to even', () => {
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00, 'tie rounds down to even');
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02, 'tie rounds up to even');
  assert.equal(floatToHalf(1 + 2 ** -11 + 2 ** -20), 0x3c01, 'above the tie rounds up');
  assert.equal(floatToHalf(65519), 0x7bff);
  assert.equal(floatToHalf(65520), 0x7c00, 'overflows to infinity');
  assert.equal(floatToHalf(-1e9), 0xfc00);
  assert.equal(floatToHalf(2 ** -25), 0x0000, 'half the smallest subnormal ties to zero');
  assert.equal(floatToHalf(2 ** -25 * 1.5), 0x0001);
  assert.equal(floatToHalf(3 * 2 ** -25), 0x0002, 'subnormal tie rounds to even');
  assert.equal(floatToHalf(2 ** -14 - 2 ** -25), 0x0400, 'rounds up into the normals');
  assert.equal(floatToHalf(-0), 0x8000);
  assert.equal(floatToHalf(NaN) & 0x7e00, 0x7e00);
  assert.equal(floatToHalf(Infinity), 0x7c00);
});

test('CRC-32: the check value, and a continued CRC equals the whole one', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  const bytes = fs.readFileSync(STATE_DICT).subarray(0, 100_000);
  assert.equal(crc32(bytes.subarray(500), crc32(bytes.subarray(0, 500))), crc32(bytes));
});

test('zip64 records and deflated entries read back', () => {
  const entries = [
    { name: 'a/data.pkl', data: Buffer.from('x') },
    { name: 'a/big', data: Buffer.alloc(100_000, 7), options: { deflate: true } },
    { name: 'a/empty', data: Buffer.alloc(0) },
  ];
  for (const forceZip64 of [false, true]) {
    const zip = new ZipReader(zipToBuffer(entries, { forceZip64 }), 'mem.zip');
    assert.deepEqual([...zip.entries.keys()], ['a/data.pkl', 'a/big', 'a/empty']);
    assert.deepEqual(zip.read('a/big'), entries[1]!.data);
    assert.equal(zip.entries.get('a/big')!.method, 8);
    assert.equal(zip.read('a/empty').length, 0);
    assert.equal(zip.entries.get('a/data.pkl')!.dataOffset % 64, 0);
  }
});

function sampleData(sd: StateDict): Yolo5CheckpointData {
  const weight = sd.get('model.0.conv.weight')!;
  const ema = new Map([...sd].map(([k, t]) => [k, t]));
  ema.set('model.0.conv.weight', {
    dtype: 'float32',
    shape: weight.shape.slice(),
    data: toFloat32(weight).map((v) => v * 0.5),
  });
  return {
    model: sd,
    ema,
    updates: 1234,
    epoch: 7,
    bestFitness: 0.625,
    optimizer: {
      state: new Map([
        [
          0,
          { momentum_buffer: { dtype: 'float32', shape: [2], data: new Float32Array([1.5, -2]) } },
        ],
        [1, { step: { dtype: 'int64', shape: [], data: new BigInt64Array([3n]) } }],
      ]),
      param_groups: [
        { lr: 0.01, momentum: 0.937, nesterov: true, params: [0, 1], initial_lr: 0.01 },
      ],
    },
    yaml: golden().yaml,
    names: ['ellipse', 'rect', 'triangle', 'cross', 'ring'],
    stride: [8, 16, 32],
    hyp: { lr0: 0.01, anchor_t: 4, fl_gamma: 0 },
    opt: {
      epochs: 60,
      freeze: [0],
      weights: '',
      big: 2n ** 70n,
      name: 'ünïcode ✓',
      tuple: new PyTuple([1, 2.5]),
    },
    date: '2026-01-02T03:04:05.000Z',
  };
}

test('a written checkpoint reads back exactly (float32)', () => {
  const { sd } = fixtures();
  const data = sampleData(sd.state);
  const file = path.join(tempDir(), 'last.pt');
  writeCheckpoint(file, data);
  const back = readCheckpoint(file);
  assert.equal(back.kind, 'yolo5');
  assertSameState(back.state, data.ema as StateDict);
  assertSameState(back.modelState!, sd.state);
  assert.deepEqual(back.yaml, data.yaml);
  assert.deepEqual(back.names, data.names);
  assert.equal(back.nc, 5);
  assert.deepEqual(back.stride, [8, 16, 32]);
  assert.equal(back.epoch, 7);
  assert.equal(back.bestFitness, 0.625);
  assert.equal(back.updates, 1234);
  assert.deepEqual(back.hyp, data.hyp);
  assert.deepEqual(back.opt, { ...data.opt, tuple: [1, 2.5] });
  assert.equal(back.date, data.date);
  assert.deepEqual(back.optimizer, data.optimizer);
  assert.equal(back.meta['format'], 'yolo5');
  assert.deepEqual(
    fs.readdirSync(path.dirname(file)),
    ['last.pt'],
    'no temporary file is left behind',
  );
});

test('the zip layout is what torch.load expects: archive/, version 3, little endian, 64-byte aligned', () => {
  const { sd } = fixtures();
  const zip = new ZipReader(checkpointToBuffer(sampleData(sd.state)), 'mem.pt');
  const names = [...zip.entries.keys()];
  assert.equal(names[0], 'archive/data.pkl');
  assert.ok(names.includes('archive/data/0'));
  assert.equal(Buffer.from(zip.read('archive/version')).toString(), '3\n');
  assert.equal(Buffer.from(zip.read('archive/byteorder')).toString(), 'little');
  for (const entry of zip.entries.values()) {
    assert.equal(entry.method, 0, `${entry.name} is stored`);
    if (entry.name.startsWith('archive/data/'))
      assert.equal(entry.dataOffset % 64, 0, `${entry.name} aligned`);
  }
});

test('half checkpoints store float16 bit-identical to the reference and keep other dtypes', () => {
  const { pt, sd } = fixtures();
  const data = { ...sampleData(sd.state), ema: null };
  const file = path.join(tempDir(), 'best.pt');
  writeCheckpoint(file, data, { half: true });
  writeCheckpoint(file, data, { half: true }); // overwrites in place
  const back = readCheckpoint(file);
  assert.equal(back.modelState, undefined);
  assertSameState(back.state, pt.state);
  const moment = (
    back.optimizer as { state: Map<number, { momentum_buffer: HostTensor }> }
  ).state.get(0)!;
  assert.equal(moment.momentum_buffer.dtype, 'float32', 'optimizer state stays float32');
  assert.deepEqual(toHalf(sd.state.get('model.0.bn.num_batches_tracked')!).dtype, 'int64');
});

test('writing reports bad tensors and unsupported values with their path', () => {
  const { sd } = fixtures();
  const bad = new Map(sd.state);
  bad.set('model.0.conv.weight', { dtype: 'float32', shape: [2, 3], data: new Float32Array(5) });
  assert.throws(
    () => checkpointToBuffer({ ...sampleData(sd.state), model: bad, ema: null }, {}, 'x.pt'),
    (err: Error & { code?: string }) =>
      err.code === 'E_CHECKPOINT' &&
      /model\.model\.0\.conv\.weight.*5 values.*\[2, 3\]/.test(err.message),
  );
  assert.throws(
    () => checkpointToBuffer({ ...sampleData(sd.state), opt: { when: new Date() } }, {}, 'x.pt'),
    /x\.pt: opt\.when: cannot save a Date/,
  );
  assert.throws(
    () => writeCheckpoint(path.join(tempDir(), 'no', 'such', 'dir.pt'), sampleData(sd.state)),
    (err: Error & { code?: string }) => err.code === 'E_FILE',
  );
});

// ---- Python torch, where installed -------------------------------------------------------------

function findTorchPython(): string | undefined {
  for (const python of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 120_000 });
    if (r.status === 0) return python;
  }
  return undefined;
}

function runPython(python: string, script: string, args: string[]): unknown {
  const r = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, `python failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** Loads a file in Python and reports what it holds; `mode` picks the loader (see below). */
const PY_LOAD = `
import json, pickle, sys, types, torch
path, mode = sys.argv[1], sys.argv[2]
if mode == 'weights_only':
    ck = torch.load(path, weights_only=True)
else:
    # the weights_only allow-list through find_class (torch.load resolves storage classes itself)
    allowed = {('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor_v2')}
    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in allowed:
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f'refused {module}.{name}')
    restricted = types.ModuleType('restricted')
    restricted.Unpickler = Restricted
    restricted.load = pickle.load
    ck = torch.load(path, pickle_module=restricted)
w = ck['model']['model.0.conv.weight']
opt = ck.get('optimizer')
print(json.dumps({
  'keys': list(ck.keys()), 'format': ck['format'], 'names': ck['names'], 'nc': ck['nc'],
  'model_type': type(ck['model']).__name__, 'n': len(ck['model']), 'dtype': str(w.dtype),
  'shape': list(w.shape), 'values': w.float().flatten()[:8].tolist(),
  'nbt': ck['model']['model.0.bn.num_batches_tracked'].item(),
  'momentum': opt['state'][0]['momentum_buffer'].tolist() if opt else None,
  'yaml': ck['yaml'], 'best_fitness': ck['best_fitness'],
}))`;

test('Python torch.load(weights_only=True) opens what we write, and we read what torch.save writes', (t) => {
  const python = findTorchPython();
  if (python === undefined) {
    t.skip('no python torch: neither /usr/bin/python3 nor python3 imports torch');
    return;
  }
  const version = runPython(
    python,
    'import json, torch; print(json.dumps(torch.__version__))',
    [],
  ) as string;
  // torch < 2.0's weights_only unpickler has no BINFLOAT: any float (yaml, hyp) stops it there
  const weightsOnlyFloats = Number(version.split('.')[0]) >= 2;
  const { sd } = fixtures();
  const dir = tempDir();
  const check = (data: Yolo5CheckpointData, mode: string): void => {
    const file = path.join(dir, `ours-${mode}.pt`);
    writeCheckpoint(file, data, { half: true });
    const loaded = runPython(python, PY_LOAD, [file, mode]) as Record<string, unknown>;
    assert.equal(loaded['format'], 'yolo5');
    assert.deepEqual(loaded['names'], data.names);
    assert.equal(loaded['nc'], 5);
    assert.equal(loaded['model_type'], 'OrderedDict');
    assert.equal(loaded['n'], sd.state.size);
    assert.equal(loaded['dtype'], 'torch.float16');
    assert.deepEqual(loaded['shape'], [16, 3, 6, 6]);
    assert.deepEqual(
      loaded['values'],
      Array.from(toFloat32(sd.state.get('model.0.conv.weight')!).subarray(0, 8)),
    );
    assert.equal(loaded['nbt'], Number(sd.state.get('model.0.bn.num_batches_tracked')!.data[0]));
    assert.deepEqual(loaded['yaml'], data.yaml);
    assert.equal(loaded['best_fitness'], data.bestFitness ?? null);
    if (data.optimizer !== undefined) assert.deepEqual(loaded['momentum'], [1.5, -2]);
  };
  const full = { ...sampleData(sd.state), ema: null };
  check(full, 'restricted');
  if (weightsOnlyFloats) {
    check(full, 'weights_only');
  } else {
    const { optimizer: _o, hyp: _h, stride: _s, ...rest } = full;
    check(
      {
        ...rest,
        yaml: { nc: 5, ch: 3, anchors: [[10, 13, 16, 30, 33, 23]] },
        opt: { epochs: 60 },
        bestFitness: null,
      },
      'weights_only',
    );
  }

  // the other way: dtypes, a transposed view, shared storage and an OrderedDict with _metadata
  const theirs = path.join(dir, 'theirs.pt');
  runPython(
    python,
    `
import json, sys, collections, torch
base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
sd = collections.OrderedDict()
sd['t'] = base.t()
sd['row'] = base[1]
sd['h'] = torch.tensor([0.1, -2.5, 65504.0], dtype=torch.float16)
sd['bf'] = torch.tensor([1.5, -3.0], dtype=torch.bfloat16)
sd['d'] = torch.tensor([1e-300, 2.0], dtype=torch.float64)
sd['i'] = torch.tensor([[-7, 8]], dtype=torch.int32)
sd['l'] = torch.tensor(2**40)
sd['b'] = torch.tensor([True, False])
sd['u'] = torch.tensor([255], dtype=torch.uint8)
sd._metadata = {'': {'version': 1}}
torch.save(sd, sys.argv[1])
print(json.dumps(True))`,
    [theirs],
  );
  const read = readCheckpoint(theirs);
  assert.equal(read.kind, 'state_dict');
  const s = read.state;
  assert.deepEqual(s.get('t')!.shape, [4, 3]);
  assert.deepEqual(Array.from(toFloat32(s.get('t')!)), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
  assert.deepEqual(Array.from(toFloat32(s.get('row')!)), [4, 5, 6, 7]);
  assert.deepEqual(Array.from(toFloat32(s.get('h')!)), [
    Math.fround(halfToFloat(floatToHalf(0.1))),
    -2.5,
    65504,
  ]);
  assert.deepEqual(Array.from(toFloat32(s.get('bf')!)), [1.5, -3]);
  assert.deepEqual(s.get('d')!.data, new Float64Array([1e-300, 2]));
  assert.deepEqual(s.get('i')!.data, new Int32Array([-7, 8]));
  assert.deepEqual(s.get('l')!, {
    dtype: 'int64',
    shape: [],
    data: new BigInt64Array([2n ** 40n]),
  });
  assert.deepEqual(s.get('b')!, { dtype: 'bool', shape: [2], data: new Uint8Array([1, 0]) });
  assert.deepEqual(s.get('u')!.data, new Uint8Array([255]));
});

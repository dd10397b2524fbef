// --device: the spelling the reference accepts, clear errors where CUDA is missing, and (on a
// machine whose LibTorch sees a CUDA device) forward, val, detect and training on device 0
// against the CPU. The CUDA tests skip without CUDA.
import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDevice } from '../lib/native/device';
import { Yolo5Error } from '../lib/errors';
import { detect, loadModel, runtimeInfo, train, val } from '../lib';
import { fixture, golden, readBin, relMaxDiff, runCli, tempDir } from './helpers';

const cuda = runtimeInfo().cuda;
const noCuda = cuda.available ? false : 'no CUDA device visible to this LibTorch';
const weights = fixture('yolov5n-shapes5.pt');
const data = fixture('shapes5', 'data.yaml');

test('device spellings: cpu, an index, cuda, cuda:N; several or others are refused by name', () => {
  // No device: the CPU, or YOLO5_DEVICE (scripts/gpu-check.sh runs the suite on a GPU with it).
  const fallback = process.env.YOLO5_DEVICE ? parseDevice(process.env.YOLO5_DEVICE) : 'cpu';
  assert.equal(parseDevice(undefined), fallback);
  assert.equal(parseDevice(''), fallback);
  assert.equal(parseDevice('CPU'), 'cpu');
  for (const bad of ['gpu', 'cuda:', '-1', 'cuda:x', '0.5']) {
    assert.throws(
      () => parseDevice(bad, '--device'),
      (e: unknown) =>
        e instanceof Yolo5Error &&
        e.code === 'E_ARG' &&
        e.message.startsWith(
          'Expected cpu, a CUDA device index (0) or cuda:N for --device but received',
        ),
    );
  }
  assert.throws(() => parseDevice('0,1', '--device'), /several devices .* are not supported/);
  if (cuda.available) {
    assert.equal(parseDevice(0), 'cuda:0');
    assert.equal(parseDevice('cuda'), 'cuda:0');
    assert.throws(() => parseDevice(cuda.deviceCount), /only \d+ CUDA device\(s\) here/);
  }
});

test(
  'asking for CUDA where LibTorch has none is one clear error (API and CLI)',
  { skip: !noCuda },
  async () => {
    for (const spec of [0, 'cuda', 'cuda:0']) {
      await assert.rejects(
        loadModel({ cfg: 'yolov5n', nc: 3, device: spec }),
        (e: unknown) =>
          e instanceof Yolo5Error &&
          e.code === 'E_ARG' &&
          /CUDA is not available to LibTorch .*use cpu/.test(e.message),
      );
    }
    const r = runCli(
      'val',
      '--weights',
      weights,
      '--data',
      data,
      '--img',
      '128',
      '--device',
      '0',
      '--project',
      tempDir(),
    );
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /device "0": CUDA is not available/);
    assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  },
);

test('device cpu is accepted everywhere and reported', async () => {
  const m = await loadModel({ weights, device: 'cpu' });
  assert.equal(m.device, 'cpu');
  assert.equal((await m.to('cpu')).device, 'cpu');
  assert.equal((await m.clone()).device, 'cpu');
});

describe('on CUDA device 0', { skip: noCuda }, () => {
  // Convolutions may use TF32 on recent GPUs (as PyTorch does by default): compare loosely.
  test('forward matches the CPU', async () => {
    const g = golden();
    const f = g.forward[0]!;
    const cpu = await loadModel({ weights });
    const gpu = await loadModel({ weights, device: 0 });
    assert.equal(gpu.device, 'cuda:0');
    const a = await cpu.forward(readBin(f.input), f.input.shape);
    const b = await gpu.forward(readBin(f.input), f.input.shape);
    const d = relMaxDiff(b.output!.data as Float32Array, a.output!.data as Float32Array);
    assert.ok(d.rel < 5e-3, `CUDA vs CPU forward: ${d.rel} relative`);
  });

  test('val and detect match the CPU', async () => {
    const cpu = await val({ weights, data, imgsz: 256 });
    const gpu = await val({ weights, data, imgsz: 256, device: 0 });
    assert.ok(
      Math.abs(gpu.metrics.mAP50 - cpu.metrics.mAP50) < 2e-3,
      `${gpu.metrics.mAP50} vs ${cpu.metrics.mAP50}`,
    );
    const image = fixture('shapes5', 'images', 'val', '00000.jpg');
    const [a] = await detect(image, { weights, imgsz: 256 });
    const [b] = await detect(image, { weights, imgsz: 256, device: 'cuda:0' });
    assert.deepEqual(
      b!.boxes.map((x) => x.class),
      a!.boxes.map((x) => x.class),
    );
  });

  test('training with --freeze 10 keeps the frozen layers bit-identical', async () => {
    const dir = tempDir();
    const before = new Map(
      (await (await loadModel({ weights })).getState()).map((t) => [t.name, t.data]),
    );
    const r = await train({
      data,
      weights,
      imgsz: 128,
      batch: 16,
      epochs: 2,
      workers: 1,
      freeze: 10,
      device: 0,
      project: dir,
      name: 'run',
      noautoanchor: true,
    });
    assert.equal(r.status, 'completed');
    assert.equal(r.model.device, 'cuda:0');
    assert.ok(r.final && r.final.metrics.mAP50 > 0);
    for (const t of await r.model.getState()) {
      if (!r.frozen.includes(t.name)) continue;
      assert.deepEqual(t.data, before.get(t.name), t.name);
    }
  });
});

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { exportModel, loadModel, Yolo5Error, type Model } from '../lib';
import { ProtoWriter } from '../lib/report/protobuf';
import { goldenModel, relMaxDiff, tempDir } from './helpers';

const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');

/** Deterministic pseudo-random numbers in [0, 1). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function image(shape: number[], seed: number): Float32Array {
  const r = random(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, r);
}

/**
 * Runs the exported file in onnxruntime and Model.forward on the same input; returns the largest
 * difference relative to max |reference| over the whole output, and the largest absolute
 * difference over the objectness and class columns (probabilities).
 */
async function compare(model: Model, file: string, shape: number[], seed = 1) {
  const input = image(shape, seed);
  const ref = (await model.forward(input, shape)).output!;
  const session = await ort.InferenceSession.create(file);
  const result = await session.run({ images: new ort.Tensor('float32', input, shape) });
  const out = result.output0!;
  assert.deepEqual(out.dims, ref.shape, 'output shape');
  const data = out.data as Float32Array;
  const no = ref.shape[2]!;
  let probDiff = 0;
  for (let i = 0; i < data.length; i++) {
    if (i % no >= 4) probDiff = Math.max(probDiff, Math.abs(data[i]! - ref.data[i]!));
  }
  return { ...relMaxDiff(data, ref.data), probDiff, dims: out.dims };
}

function assertClose(d: { rel: number; abs: number; at: number; probDiff: number }, what: string) {
  assert.ok(d.rel <= 1e-4, `${what}: max rel. error ${d.rel} (abs ${d.abs} at ${d.at})`);
  assert.ok(d.probDiff <= 1e-4, `${what}: obj/class max abs. error ${d.probDiff}`);
}

/** Every module the model yaml format knows, small, with a non-default activation. */
function allModulesYaml(activation: string, upsample: string): Record<string, unknown> {
  return {
    nc: 3,
    depth_multiple: 0.33,
    width_multiple: 0.25,
    activation,
    anchors: [
      [10, 13, 16, 30, 33, 23],
      [30, 61, 62, 45, 59, 119],
    ],
    backbone: [
      [-1, 1, 'Focus', [64, 3]], // 0 /2
      [-1, 1, 'Conv', [128, 3, 2]], // 1 /4
      [-1, 1, 'GhostConv', [128, 3, 1]], // 2
      [-1, 3, 'C3Ghost', [128]], // 3
      [-1, 1, 'DWConv', [128, 3, 2]], // 4 /8
      [-1, 6, 'C3x', [128]], // 5 (two CrossConv blocks)
      [-1, 1, 'GhostBottleneck', [128, 3, 2]], // 6 /16
      [-1, 3, 'BottleneckCSP', [128, false]], // 7
      [-1, 1, 'SPP', [128, [3, 5]]], // 8
      [-1, 1, 'SPPF', [128, 3]], // 9
    ],
    head: [
      [-1, 1, 'Bottleneck', [128]], // 10
      [-1, 1, 'CrossConv', [128, 3, 1, 1, 1.0, true]], // 11
      [-1, 1, 'nn.Identity', []], // 12
      [-1, 1, 'nn.Upsample', [null, 2, upsample]], // 13 /8
      [[-1, 5], 1, 'Concat', [1]], // 14
      [-1, 1, 'Conv', [64, 1, 1]], // 15
      [-1, 6, 'Conv', [64, 3, 1]], // 16 (a Sequential of two Convs)
      [-1, 1, 'GhostBottleneck', [64, 3, 1]], // 17
      [[17, 9], 1, 'Detect', ['nc', 'anchors']], // 18
    ],
  };
}

/** Random BatchNorm statistics and affine parameters, so that folding them is really tested. */
async function randomizeBatchNorm(model: Model, seed: number): Promise<void> {
  const r = random(seed);
  const entries = (await model.getState())
    .filter((t) => /\.bn\.(weight|bias|running_mean|running_var)$/.test(t.name))
    .map((t) => {
      const kind = t.name.split('.').at(-1)!;
      const data = Float32Array.from(t.data as Float32Array, () =>
        kind === 'running_var' ? 0.2 + r() : kind === 'weight' ? 0.5 + r() : r() - 0.5,
      );
      return { name: t.name, shape: t.shape, data };
    });
  assert.ok(entries.length > 50);
  const report = await model.loadState(entries);
  assert.equal(report.loaded, entries.length);
}

describe('ONNX export runs in onnxruntime-node and matches Model.forward', () => {
  const dir = tempDir('yolo5-export-');

  test('trained yolov5n (golden weights), 128×128, fixed shape', async () => {
    const model = await goldenModel();
    const file = path.join(dir, 'golden-128.onnx');
    const r = await exportModel(model, { file, imgsz: 128 });
    assert.equal(r.file, file);
    assert.equal(r.bytes, fs.statSync(file).size);
    assert.deepEqual(r.input, { name: 'images', shape: [1, 3, 128, 128] });
    // 3 anchors × (16² + 8² + 4²) cells, 5 + nc values each.
    assert.deepEqual(r.output, { name: 'output0', shape: [1, 3 * (256 + 64 + 16), 5 + model.nc] });
    const d = await compare(model, file, [1, 3, 128, 128]);
    assertClose(d, 'golden 128');
    // The onnx file is self-describing: opset and metadata as written.
    const session = await ort.InferenceSession.create(file);
    assert.deepEqual(session.inputNames, ['images']);
    assert.deepEqual(session.outputNames, ['output0']);
  });

  test('non-square 128×192, batch 2, opset 12', async () => {
    const model = await goldenModel();
    const file = path.join(dir, 'golden-128x192.onnx');
    const r = await exportModel(model, { file, imgsz: [128, 192], batch: 2, opset: 12 });
    assert.deepEqual(r.input.shape, [2, 3, 128, 192]);
    assertClose(await compare(model, file, [2, 3, 128, 192], 2), 'golden 128×192 b2');
  });

  test('dynamic batch, height and width: one file, several input shapes', async () => {
    const model = await goldenModel();
    const file = path.join(dir, 'golden-dynamic.onnx');
    const r = await exportModel(model, { file, dynamic: true });
    assert.deepEqual(r.input.shape, ['batch', 3, 'height', 'width']);
    assert.deepEqual(r.output.shape, ['batch', 'anchors', 5 + model.nc]);
    for (const shape of [
      [2, 3, 128, 192],
      [1, 3, 160, 96],
    ]) {
      assertClose(await compare(model, file, shape, 3), `dynamic ${shape.join('×')}`);
    }
  });

  test('dynamic batch only: any batch, the exported size only', async () => {
    const model = await goldenModel();
    const file = path.join(dir, 'golden-dynamic-batch.onnx');
    const r = await exportModel(model, { file, imgsz: 96, dynamic: 'batch' });
    assert.deepEqual(r.input.shape, ['batch', 3, 96, 96]);
    assertClose(await compare(model, file, [3, 3, 96, 96], 4), 'batch 3');
    await assert.rejects(compare(model, file, [1, 3, 128, 128], 4));
  });

  test('every module kind, random BatchNorm statistics, LeakyReLU and nearest upsampling', async () => {
    const model = await loadModel({ cfg: allModulesYaml('nn.LeakyReLU(0.1)', 'nearest') as never });
    await randomizeBatchNorm(model, 7);
    const file = path.join(dir, 'all-modules.onnx');
    await exportModel(model, { file, imgsz: [64, 96] });
    assertClose(await compare(model, file, [1, 3, 64, 96], 5), 'all modules');
  });

  test('every module kind with Hardswish and bilinear upsampling, dynamic, opset 13', async () => {
    const model = await loadModel({ cfg: allModulesYaml('nn.Hardswish()', 'bilinear') as never });
    await randomizeBatchNorm(model, 8);
    const file = path.join(dir, 'all-modules-hardswish.onnx');
    await exportModel(model, { file, dynamic: true, opset: 13 });
    assertClose(await compare(model, file, [2, 3, 96, 64], 6), 'hardswish dynamic');
  });

  test('a fused model exports the same graph (conv biases instead of BatchNorm)', async () => {
    const model = await (await goldenModel()).clone();
    await model.fuse();
    assert.ok(model.info().fused);
    const file = path.join(dir, 'golden-fused.onnx');
    await exportModel(model, { file, imgsz: 64 });
    assertClose(await compare(model, file, [1, 3, 64, 64], 9), 'fused');
    const unfused = fs.readFileSync(path.join(dir, 'golden-128.onnx'));
    assert.ok(Math.abs(fs.statSync(file).size - unfused.length) < unfused.length * 0.05);
  });
});

describe('export: bad input', () => {
  test('an unknown format names itself and the supported ones', async () => {
    const model = await goldenModel();
    const file = path.join(tempDir(), 'x.tflite');
    await assert.rejects(exportModel(model, { format: 'tflite', file }), (e: unknown) => {
      assert.ok(e instanceof Yolo5Error);
      assert.equal(e.code, 'E_ARG');
      assert.match(e.message, /Unknown export format "tflite".*supported: onnx/);
      return true;
    });
    assert.equal(fs.existsSync(file), false);
  });

  test('an existing file is not overwritten without force', async () => {
    const model = await goldenModel();
    const file = path.join(tempDir(), 'mine.onnx');
    fs.writeFileSync(file, 'user data');
    await assert.rejects(exportModel(model, { file, imgsz: 64 }), (e: unknown) => {
      assert.ok(e instanceof Yolo5Error);
      assert.equal(e.code, 'E_FILE');
      assert.ok(e.message.includes(file), e.message);
      assert.match(e.message, /already exists/);
      return true;
    });
    assert.equal(fs.readFileSync(file, 'utf8'), 'user data');
    const r = await exportModel(model, { file, imgsz: 64, force: true });
    assert.equal(fs.statSync(file).size, r.bytes);
  });

  test('sizes, batch, opset and dynamic are checked', async () => {
    const model = await goldenModel();
    const file = path.join(tempDir(), 'm.onnx');
    const cases: [Parameters<typeof exportModel>[1], RegExp][] = [
      [{ file, imgsz: 100 }, /multiple of 32 for imgsz height but received 100/],
      [{ file, imgsz: [64, 48] }, /multiple of 32 for imgsz width but received 48/],
      [{ file, batch: 0 }, /integer >= 1 for batch but received 0/],
      [{ file, opset: 11 }, /between 12 and 17 for opset but received 11/],
      [{ file, dynamic: 'height' as never }, /for dynamic but received "height"/],
    ];
    for (const [opts, message] of cases) {
      await assert.rejects(exportModel(model, opts), message);
    }
    assert.equal(fs.existsSync(file), false);
  });

  test('a model built from a yaml alone needs a file name', async () => {
    const model = await loadModel({ cfg: 'yolov5n', nc: 2 });
    await assert.rejects(exportModel(model, { imgsz: 64 }), /needs file/);
  });
});

test('protobuf varints: 300 and negative int64 (two’s complement, 10 bytes)', () => {
  const w = new ProtoWriter().int(1, 300).int(2, -1);
  assert.deepEqual(
    [...w.finish()],
    [0x08, 0xac, 0x02, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
  );
});

test('yolo5 export CLI: default file next to the weights, --force, unknown format', async () => {
  const dir = tempDir();
  const weights = path.join(dir, 'best.pt');
  await (await goldenModel()).save(weights);
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'export', '--weights', weights, ...args], {
      encoding: 'utf8',
      cwd: dir,
    });
  const r = run('--include', 'onnx', '--imgsz', '64', '96', '--dynamic', 'batch');
  assert.equal(r.status, 0, r.stderr);
  const onnx = path.join(dir, 'best.onnx');
  assert.ok(fs.existsSync(onnx));
  assert.match(
    r.stdout,
    /ONNX: wrote best\.onnx \([\d.]+ MB, opset 17\): input images \(batch, 3, 64, 96\), output output0 \(batch, 378, 10\)/,
  );
  const before = fs.statSync(onnx).mtimeMs;
  const again = run('--imgsz', '64');
  assert.equal(again.status, 1);
  assert.match(again.stderr, /best\.onnx already exists; not overwriting it/);
  assert.equal(fs.statSync(onnx).mtimeMs, before);
  const forced = run('--imgsz', '64', '--force');
  assert.equal(forced.status, 0, forced.stderr);
  const session = await ort.InferenceSession.create(onnx);
  const out = await session.run({
    images: new ort.Tensor('float32', new Float32Array(3 * 64 * 64), [1, 3, 64, 64]),
  });
  assert.deepEqual(out.output0!.dims, [1, 3 * (64 + 16 + 4), 10]);
  const bad = run('--include', 'onnx', 'coreml');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /Unknown export format "coreml"; supported: onnx/);
});

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import { loadModel, namedParameters, Yolo5Error } from '../lib';
import { fixture, golden, readBin, relMaxDiff } from './helpers';

interface KeyList {
  parameters: number;
  state: [string, number[], 'param' | 'buffer'][];
}
const keys = JSON.parse(fs.readFileSync(fixture('yolov5-v7.0-state-keys.json'), 'utf8')) as Record<
  string,
  KeyList
>;

describe('state dict names and shapes equal the reference for every config', () => {
  for (const [key, expected] of Object.entries(keys)) {
    const [, cfg, nc] = /^(yolov5\w+)-nc(\d+)$/.exec(key)!;
    test(key, async () => {
      const model = await loadModel({ cfg: cfg!, nc: Number(nc) });
      const state = model.stateDict().map((e) => [e.name, e.shape, e.kind]);
      assert.deepEqual(state, expected.state);
      const params = model.namedParameters();
      assert.deepEqual(
        params.map((p) => [p.name, p.shape]),
        expected.state.filter((s) => s[2] === 'param').map((s) => [s[0], s[1]]),
      );
      const total = params.reduce((s, p) => s + p.numel, 0);
      assert.equal(total, expected.parameters);
      assert.equal(model.info().parameters, expected.parameters);
      assert.ok(params.every((p) => p.requiresGrad));
    });
  }
});

test('yolov5s summary: 214 layers, 7,235,389 parameters, 16.6 GFLOPs, strides 8/16/32', async () => {
  const model = await loadModel({ cfg: 'yolov5s.yaml' });
  const info = model.info();
  assert.equal(info.layers, 214);
  assert.equal(info.parameters, 7_235_389);
  assert.equal(info.gradients, 7_235_389);
  assert.equal(info.gflops.toFixed(1), '16.6');
  // Per layer: they add up; model.0 is its 6×6 conv (3·36 MACs per output) plus BatchNorm (4).
  assert.equal(info.layerGflops.length, 25);
  assert.ok(Math.abs(info.layerGflops.reduce((a, b) => a + b, 0) - info.gflops) < 1e-9);
  assert.equal(
    info.layerGflops[0]!.toFixed(7),
    ((2 * 320 * 320 * 32 * (108 + 4)) / 1e9).toFixed(7),
  );
  assert.equal(info.layerGflops[11], 0, 'nn.Upsample');
  assert.deepEqual(info.stride, [8, 16, 32]);
  // Anchors are stored in grid units: pixels / stride.
  assert.deepEqual(info.anchors[0], [
    [10 / 8, 13 / 8],
    [16 / 8, 30 / 8],
    [33 / 8, 23 / 8],
  ]);
  // yolov5s parameters = 7,006,144 + 2,697·(nc + 5)
  const nc3 = await loadModel({ cfg: 'yolov5s.yaml', nc: 3 });
  assert.equal(nc3.info().parameters, 7_006_144 + 2_697 * (3 + 5));
});

test('a fresh model has the reference build state: BN after the stride probe, Detect bias priors', async () => {
  const model = await loadModel({ cfg: 'yolov5n.yaml', nc: 80 });
  const state = new Map((await model.getState()).map((t) => [t.name, t]));
  const rv = state.get('model.0.bn.running_var')!.data as Float32Array;
  const rm = state.get('model.0.bn.running_mean')!.data as Float32Array;
  assert.ok(
    rv.every((v) => Math.abs(v - 0.9) < 1e-6),
    'running_var 0.9',
  );
  assert.ok(
    rm.every((v) => v === 0),
    'running_mean 0',
  );
  assert.equal(state.get('model.0.bn.num_batches_tracked')!.data[0], 1n);
  // Objectness bias prior at stride 8: ln(8 / (640/8)^2); class prior ln(0.6 / (nc - 0.99999)).
  const bias = state.get('model.24.m.0.bias')!.data as Float32Array;
  const no = 85;
  const obj = Math.log(8 / (640 / 8) ** 2);
  const cls = Math.log(0.6 / (80 - 0.99999));
  const w = state.get('model.24.m.0.weight')!;
  const bound = 1 / Math.sqrt(w.shape[1]!); // default Conv2d bias init is U(-bound, bound)
  for (let a = 0; a < 3; a++) {
    assert.ok(Math.abs(bias[a * no + 4]! - obj) <= bound + 1e-6);
    assert.ok(Math.abs(bias[a * no + 5]! - cls) <= bound + 1e-6);
  }
});

describe('forward parity with the reference (golden weights and outputs)', () => {
  const g = golden();
  for (const c of g.forward) {
    test(`${c.image} ${c.input.shape.join('x')}`, async () => {
      const model = await loadModel({
        cfg: g.yaml as never,
        weights: fixture('yolov5n-shapes5.state_dict.pt'),
      });
      assert.equal(model.transfer?.transferred, 349);
      const out = await model.forward(readBin(c.input), c.input.shape);
      assert.deepEqual(out.output!.shape, c.output.shape);
      const d = relMaxDiff(out.output!.data, readBin(c.output));
      assert.ok(d.rel <= 1e-5, `max |Δ|/max|ref| = ${d.rel} (abs ${d.abs} at ${d.at})`);
      assert.equal(out.raw.length, 3);
    });
  }
});

test('forward in train mode returns the raw levels (bs, na, ny, nx, no)', async () => {
  const model = await loadModel({ cfg: 'yolov5n.yaml', nc: 2 });
  const x = new Float32Array(2 * 3 * 64 * 96).fill(0.5);
  const out = await model.forward(x, [2, 3, 64, 96], { train: true });
  assert.equal(out.output, undefined);
  assert.deepEqual(
    out.raw.map((r) => r.shape),
    [
      [2, 3, 8, 12, 7],
      [2, 3, 4, 6, 7],
      [2, 3, 2, 3, 7],
    ],
  );
});

test('forward rejects inputs that do not fit', async () => {
  const model = await loadModel({ cfg: 'yolov5n.yaml', nc: 2 });
  await assert.rejects(model.forward(new Float32Array(10), [1, 3, 64, 64]), { code: 'E_ARG' });
  await assert.rejects(
    model.forward(new Float32Array(3 * 40 * 40), [1, 3, 40, 40]),
    /multiples of 32/,
  );
  await assert.rejects(model.forward(new Float32Array(64 * 64), [1, 1, 64, 64]), (e: unknown) => {
    assert.ok(e instanceof Yolo5Error);
    assert.equal(e.code, 'E_NATIVE');
    assert.match(e.message, /input must be \(batch, 3/);
    return true;
  });
});

describe('freeze', () => {
  const trainableAfter10: Record<string, number> = {
    yolov5n: 825_789,
    yolov5s: 3_063_933,
  };
  for (const [cfg, n] of Object.entries(trainableAfter10)) {
    test(`--freeze 10 on ${cfg} (nc 80) leaves ${n} trainable`, async () => {
      const model = await loadModel({ cfg });
      const frozen = model.freeze(10);
      assert.ok(frozen.every((name) => /^model\.[0-9]\./.test(name)));
      const params = model.namedParameters();
      assert.deepEqual(
        frozen,
        params.filter((p) => /^model\.[0-9]\./.test(p.name)).map((p) => p.name),
      );
      assert.equal(
        params.filter((p) => p.requiresGrad).reduce((s, p) => s + p.numel, 0),
        n,
      );
      assert.equal(model.info().gradients, n);
    });
  }

  test('--freeze 24 leaves only Detect (yolov5s: 229,245)', async () => {
    const params = await namedParameters({ cfg: 'yolov5s', freeze: 24 });
    const trainable = params.filter((p) => p.requiresGrad);
    assert.ok(trainable.every((p) => p.name.startsWith('model.24.')));
    assert.equal(
      trainable.reduce((s, p) => s + p.numel, 0),
      229_245,
    );
  });

  test('a list freezes exactly those layers; prefixes and globs match names', async () => {
    const model = await loadModel({ cfg: 'yolov5n', nc: 3 });
    const list = model.freeze([0, 2, 11]); // 11 is an Upsample: no parameters, still allowed
    assert.ok(list.length > 0);
    assert.ok(list.every((n) => n.startsWith('model.0.') || n.startsWith('model.2.')));
    assert.ok(list.some((n) => n.startsWith('model.2.')));
    model.unfreeze();
    assert.ok(model.namedParameters().every((p) => p.requiresGrad));

    const prefix = model.freeze('model.24.m.0');
    assert.deepEqual(prefix, ['model.24.m.0.weight', 'model.24.m.0.bias']);
    model.unfreeze();
    const glob = model.freeze(['model.*.bn.weight']);
    // `*` stays within one component: only the plain Conv rows' own BatchNorms.
    assert.deepEqual(
      glob,
      [0, 1, 3, 5, 7, 10, 14, 18, 21].map((i) => `model.${i}.bn.weight`),
    );
    const byGrad = model.namedParameters().filter((p) => !p.requiresGrad);
    assert.deepEqual(
      byGrad.map((p) => p.name),
      glob,
    );
    model.unfreeze();
    // `**` crosses dots: every BatchNorm weight, nested ones included.
    const deep = model.freeze('model.**.bn.weight');
    assert.ok(deep.includes('model.2.m.0.cv1.bn.weight'));
    assert.ok(deep.every((n) => n.endsWith('.bn.weight')));
    model.unfreeze();
    assert.deepEqual(model.freeze(0), []);
  });

  test('specs that match nothing or make no sense are clear errors', async () => {
    const model = await loadModel({ cfg: 'yolov5n', nc: 3 });
    assert.throws(() => model.freeze(26), { code: 'E_FREEZE', message: /layer 25.*model\.24/ });
    assert.throws(() => model.freeze([3, 40]), { code: 'E_FREEZE', message: /layer 40/ });
    assert.throws(() => model.freeze('backbone.'), {
      code: 'E_FREEZE',
      message: /"backbone\." matches no parameter/,
    });
    assert.throws(() => model.freeze('model.*.nothing'), { code: 'E_FREEZE' });
    assert.throws(() => model.freeze([11]), { code: 'E_FREEZE', message: /matches no parameter/ });
    assert.throws(() => model.freeze(-1), { code: 'E_FREEZE' });
    assert.throws(() => model.freeze(1.5), { code: 'E_FREEZE' });
    assert.ok(
      model.namedParameters().every((p) => p.requiresGrad),
      'a failed freeze changes nothing',
    );
  });
});

test('fuse() folds BatchNorm into the convolutions with the same outputs', async () => {
  const g = golden();
  const c = g.forward[1]!;
  const model = await loadModel({
    cfg: g.yaml as never,
    weights: fixture('yolov5n-shapes5.state_dict.pt'),
  });
  const before = await model.forward(readBin(c.input), c.input.shape);
  await model.fuse();
  assert.equal(model.info().fused, true);
  assert.ok(
    !model.stateDict().some((e) => e.name.includes('.bn.')),
    'no BatchNorm left in Conv blocks',
  );
  assert.ok(model.stateDict().some((e) => e.name === 'model.0.conv.bias'));
  const after = await model.forward(readBin(c.input), c.input.shape);
  const d = relMaxDiff(after.output!.data, before.output!.data);
  assert.ok(d.rel <= 1e-5, `fused differs by ${d.rel}`);
  assert.ok(relMaxDiff(after.output!.data, readBin(c.output)).rel <= 1e-5);
});

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadModel } from '../lib';
import type { LossHyp } from '../lib/native/addon';
import { fixture, golden, readBin } from './helpers';

const g = golden();
interface GoldenLoss {
  input: { file: string; shape: number[]; dtype: string };
  targets: number[][];
  hyp: LossHyp & Record<string, number>;
  loss_times_bs: number;
  lbox: number;
  lobj: number;
  lcls: number;
  grad_norms: Record<string, number>;
}
const L = g.loss as unknown as GoldenLoss;

function rel(got: number, want: number): number {
  return Math.abs(got - want) / Math.abs(want);
}

test('loss and gradients equal the reference on the golden batch', async () => {
  const model = await loadModel({
    cfg: g.yaml as never,
    weights: fixture('yolov5n-shapes5.state_dict.pt'),
  });
  const r = await model.loss(
    readBin(L.input),
    L.input.shape,
    Float32Array.from(L.targets.flat()),
    L.hyp,
    {
      gradNames: Object.keys(L.grad_norms),
    },
  );
  for (const [k, want] of [
    ['loss', L.loss_times_bs],
    ['lbox', L.lbox],
    ['lobj', L.lobj],
    ['lcls', L.lcls],
  ] as const) {
    const got = r[k];
    assert.ok(rel(got, want) <= 1e-5, `${k}: ${got} vs reference ${want} (rel ${rel(got, want)})`);
  }
  for (const [name, want] of Object.entries(L.grad_norms)) {
    const got = r.gradNorms[name]!;
    assert.ok(rel(got, want) <= 1e-4, `grad norm ${name}: ${got} vs ${want}`);
  }
  // Gradients are cleared afterwards; a second call gives the same numbers (train mode updates
  // BatchNorm running statistics, as a training step does, but uses batch statistics itself).
  const again = await model.loss(
    readBin(L.input),
    L.input.shape,
    Float32Array.from(L.targets.flat()),
    L.hyp,
    {
      gradNames: Object.keys(L.grad_norms),
    },
  );
  assert.ok(rel(again.loss, r.loss) < 1e-6);
  assert.ok(
    rel(again.gradNorms['model.0.conv.weight']!, r.gradNorms['model.0.conv.weight']!) < 1e-5,
  );
});

test('loss variants: no targets, label smoothing, focal loss, single class', async () => {
  const model = await loadModel({
    cfg: g.yaml as never,
    weights: fixture('yolov5n-shapes5.state_dict.pt'),
  });
  const x = readBin(L.input);
  const t = Float32Array.from(L.targets.flat());
  const base = await model.loss(x, L.input.shape, t, L.hyp, { train: false });
  const none = await model.loss(x, L.input.shape, new Float32Array(0), L.hyp, { train: false });
  assert.equal(none.lbox, 0);
  assert.equal(none.lcls, 0);
  assert.ok(none.lobj > 0);
  const smooth = await model.loss(
    x,
    L.input.shape,
    t,
    { ...L.hyp, label_smoothing: 0.1 },
    { train: false },
  );
  assert.notEqual(smooth.lcls, base.lcls);
  assert.equal(smooth.lbox, base.lbox);
  const focal = await model.loss(
    x,
    L.input.shape,
    t,
    { ...L.hyp, fl_gamma: 1.5 },
    { train: false },
  );
  assert.ok(
    focal.lobj < base.lobj && focal.lcls < base.lcls,
    'focal loss down-weights easy examples',
  );
  const pw = await model.loss(x, L.input.shape, t, { ...L.hyp, obj_pw: 2 }, { train: false });
  assert.ok(pw.lobj > base.lobj);
  await assert.rejects(model.loss(x, L.input.shape, new Float32Array(5), L.hyp), /rows of 6/);
});

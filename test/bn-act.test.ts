// The fused BatchNorm + SiLU CPU kernel (binding/kernels/bn_act.*) against LibTorch's own BatchNorm
// and SiLU on the same weights and batch: loss, every gradient, running statistics, outputs.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Model } from '../lib/model/model';
import { loadModel } from '../lib/model/load';
import { native } from '../lib/native/addon';
import { fixture, golden, readBin, relMaxDiff } from './helpers';

const g = golden();
const L = g.loss as unknown as {
  input: { file: string; shape: number[]; dtype: string };
  targets: number[][];
  hyp: never;
};
const input = readBin(L.input);
const targets = Float32Array.from(L.targets.flat());

async function twins(freeze?: number): Promise<[Model, Model]> {
  const a = await loadModel({
    cfg: g.yaml as never,
    weights: fixture('yolov5n-shapes5.state_dict.pt'),
  });
  if (freeze !== undefined) a.freeze(freeze);
  return [a, await a.clone()];
}

async function withFused<T>(on: boolean, run: () => Promise<T>): Promise<T> {
  const before = native().fusedBatchNorm();
  native().fusedBatchNorm(on);
  try {
    return await run();
  } finally {
    native().fusedBatchNorm(before);
  }
}

function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/**
 * Loss, every gradient norm and the running statistics after one training-mode batch: the fused
 * kernel on NCHW or NHWC activations against LibTorch's BatchNorm and SiLU on NCHW ones. (LibTorch
 * 1.13's own NHWC BatchNorm is not the reference: its gradient norms differ from its NCHW ones by
 * up to 3e-4, those of the fused kernel by < 1e-6, as from the Python reference's.)
 */
async function compareTraining(freeze: number | undefined, channelsLast: boolean): Promise<void> {
  const [fusedModel, plainModel] = await twins(freeze);
  const names = fusedModel
    .namedParameters()
    .filter((p) => p.requiresGrad)
    .map((p) => p.name);
  const fused = await withFused(true, () =>
    fusedModel.loss(input, L.input.shape, targets, L.hyp, { gradNames: names, channelsLast }),
  );
  const plain = await withFused(false, () =>
    plainModel.loss(input, L.input.shape, targets, L.hyp, { gradNames: names }),
  );
  const what = `freeze ${freeze ?? 0}, ${channelsLast ? 'NHWC' : 'NCHW'}`;
  assert.ok(
    names.some((n) => fused.gradNorms[n] !== plain.gradNorms[n]),
    `${what}: the fused kernel did not run (every gradient is bit-identical)`,
  );
  assert.ok(rel(fused.loss, plain.loss) < 1e-6, `${what}: loss ${fused.loss} vs ${plain.loss}`);
  for (const k of ['lbox', 'lobj', 'lcls'] as const)
    assert.ok(rel(fused[k], plain[k]) < 1e-6, `${what}: ${k} ${fused[k]} vs ${plain[k]}`);
  for (const name of names) {
    const a = fused.gradNorms[name]!;
    const b = plain.gradNorms[name]!;
    assert.ok(b > 0, `${what}: ${name} has no gradient`);
    assert.ok(rel(a, b) < 2e-5, `${what}: gradient norm of ${name}: ${a} vs ${b}`);
  }
  // Running statistics were updated the same way (frozen layers' BatchNorm too).
  const sa = await fusedModel.getState();
  const sb = await plainModel.getState();
  for (let i = 0; i < sa.length; i++) {
    const a = sa[i]!;
    const b = sb[i]!;
    if (!/running_(mean|var)$|num_batches_tracked$/.test(a.name)) continue;
    if (a.data instanceof BigInt64Array) {
      assert.deepEqual(a.data, b.data, `${what}: ${a.name}`);
      continue;
    }
    const d = relMaxDiff(a.data as Float32Array, b.data as Float32Array);
    assert.ok(d.rel < 1e-5, `${what}: ${a.name} differs by ${d.rel} (relative)`);
  }
}

test('fused BatchNorm + SiLU trains like LibTorch BatchNorm then SiLU (NCHW and NHWC)', async () => {
  assert.equal(native().fusedBatchNorm(), true, 'on by default');
  await compareTraining(undefined, false);
  await compareTraining(undefined, true);
});

test('fused BatchNorm + SiLU without autograd: a frozen prefix still updates its statistics', async () => {
  await compareTraining(10, true);
  await compareTraining(10, false);
});

test('fused BatchNorm + SiLU with running statistics (eval) gives the same detections', async () => {
  const [fusedModel, plainModel] = await twins();
  const shape = L.input.shape;
  const a = await withFused(true, () => fusedModel.forward(input, shape));
  const b = await withFused(false, () => plainModel.forward(input, shape));
  const d = relMaxDiff(a.output!.data as Float32Array, b.output!.data as Float32Array);
  assert.ok(d.rel < 1e-5, `eval output differs by ${d.rel} (relative) at ${d.at}`);
});

/**
 * The step profile (YOLO5_PROFILE, binding/train/profile.h) that scripts/bench --profile prints:
 * real training steps under LibTorch's profiler give every layer its forward time and trace the
 * backward nodes back to the layer that made them, so that frozen layers show no backward time
 * and trainable ones do.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readDataConfig } from '../lib/config/data';
import { loadSplit, toNativeSamples } from '../lib/data/split';
import { loadModel } from '../lib/model/load';
import { native } from '../lib/native/addon';
import { fixture, fixtureTrainerOptions, tempDir } from './helpers';

interface Profile {
  steps: number;
  phases: Record<string, number>;
  layers: { layer: number | 'loss'; forwardMs: number; backwardMs: number }[];
  unmappedBackwardMs: number;
  ops: { phase: string; name: string; ms: number; calls: number }[];
}

/** One epoch (8 steps) from the fixture checkpoint with `freeze` layers frozen, profiled. */
async function profiledEpoch(freeze: number): Promise<Profile> {
  const file = path.join(tempDir('yolo5-profile-'), 'profile.json');
  const model = await loadModel({ weights: fixture('yolov5n-shapes5.pt') });
  if (freeze > 0) model.freeze(freeze);
  const items = await loadSplit(readDataConfig(fixture('shapes5', 'data.yaml')), 'train', () => {});
  // The trainer reads the variables when it is made.
  process.env.YOLO5_PROFILE = file;
  process.env.YOLO5_PROFILE_STEPS = '2';
  let trainer;
  try {
    trainer = new (native().NativeTrainer)(
      model.nativeHandle(),
      null,
      toNativeSamples(items),
      fixtureTrainerOptions(64, 8),
    );
  } finally {
    delete process.env.YOLO5_PROFILE;
    delete process.env.YOLO5_PROFILE_STEPS;
  }
  await trainer.runEpoch(0, true, () => {});
  trainer.dispose();
  model.dispose();
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
}

const layer = (p: Profile, i: number) => p.layers.find((l) => l.layer === i)!;

test('the step profile gives every layer its forward and backward time', async () => {
  const p = await profiledEpoch(0);
  assert.equal(p.steps, 2);
  for (const phase of ['yolo5::forward', 'yolo5::backward', 'yolo5::optimizer'])
    assert.ok(p.phases[phase]! > 0, `${phase}: ${p.phases[phase]}`);
  assert.ok(p.layers.some((l) => l.layer === 'loss' && l.forwardMs > 0));
  for (let i = 0; i <= 24; i++) assert.ok(layer(p, i).forwardMs > 0, `model.${i} forward`);
  // Every layer with convolutions has backward time; Upsample (11, 15) too, Concat (12, 16, 19,
  // 22) only a slice's worth or none.
  for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 17, 18, 20, 21, 23, 24])
    assert.ok(layer(p, i).backwardMs > 0, `model.${i} backward`);
  // All backward time but the gradients' accumulation into .grad (no forward operator made those
  // nodes) is traced to a layer.
  const traced = p.layers.reduce((s, l) => s + l.backwardMs, 0);
  const accumulate = p.ops
    .filter((o) => o.phase === 'yolo5::backward' && o.name.endsWith('AccumulateGrad'))
    .reduce((s, o) => s + o.ms, 0);
  assert.ok(
    p.unmappedBackwardMs <= accumulate + 0.01 * traced,
    `untraced ${p.unmappedBackwardMs} ms (gradient accumulation ${accumulate}) of ${traced + p.unmappedBackwardMs}`,
  );
  // The fused BatchNorm's autograd node is among the operators, and so are the convolutions.
  const names = new Set(p.ops.map((o) => o.name));
  assert.ok(names.has('ConvolutionBackward0'), [...names].join(', '));
  assert.ok(
    [...names].some((n) => n.includes('BnActFunction')),
    [...names].join(', '),
  );
});

test('the step profile of --freeze 10: the frozen backbone has forward time and no backward', async () => {
  const p = await profiledEpoch(10);
  for (let i = 0; i < 10; i++) {
    assert.ok(layer(p, i).forwardMs > 0, `model.${i} forward`);
    assert.equal(layer(p, i).backwardMs, 0, `frozen model.${i} backward`);
  }
  for (const i of [10, 13, 17, 20, 23, 24])
    assert.ok(layer(p, i).backwardMs > 0, `trainable model.${i} backward`);
});

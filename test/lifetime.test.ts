/**
 * Native lifetime: dispose() on models and trainers, what V8 is told about native memory, and
 * synchronous accessors that never wait for a running epoch (E_BUSY where they would change it).
 */
import * as assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { readDataConfig } from '../lib/config/data';
import { loadSplit, toNativeSamples } from '../lib/data/split';
import { loadModel } from '../lib/model/load';
import type { Model } from '../lib/model/model';
import {
  native,
  type NativeSample,
  type NativeTrainer,
  type NativeTrainerOptions,
} from '../lib/native/addon';
import { fixture, fixtureTrainerOptions } from './helpers';

const data = fixture('shapes5', 'data.yaml');
const weights = fixture('yolov5n-shapes5.pt');

async function samples(): Promise<NativeSample[]> {
  return toNativeSamples(await loadSplit(readDataConfig(data), 'train', () => {}));
}

/** Options as lib/train builds them: 64 fixture images at 128 px, batch 16 (4 batches). */
function options(): NativeTrainerOptions {
  return fixtureTrainerOptions(128, 16, { cache: false, epochs: 3, channelsLast: false });
}

async function setup(): Promise<{ model: Model; ema: Model; trainer: NativeTrainer }> {
  const model = await loadModel({ weights });
  const ema = await model.clone();
  const trainer = new (native().NativeTrainer)(
    model.nativeHandle(),
    ema.nativeHandle(),
    await samples(),
    options(),
  );
  return { model, ema, trainer };
}

test('synchronous accessors answer while an epoch runs; changes are E_BUSY', async () => {
  const { model, ema, trainer } = await setup();
  const params = model.namedParameters();
  const gradients = model.info().gradients;
  const external = native().externalMemory();
  const start = performance.now();
  let answeredAt = 0;
  let busy: unknown;
  let counters: unknown;
  const seen: { gradients?: number; names?: string[]; state?: number; nc?: number; nb?: number } =
    {};
  const stats = await trainer.runEpoch(0, true, (p) => {
    if (p.batch !== 0) return;
    // All from the first batch's progress event, while the worker holds the models' locks.
    seen.gradients = model.info().gradients;
    seen.names = model.namedParameters().map((q) => q.name);
    seen.state = model.stateDict().length + ema.stateDict().length;
    seen.nc = ema.info().nc;
    seen.nb = trainer.info().batchesPerEpoch;
    answeredAt = performance.now();
    try {
      model.freeze(1);
    } catch (e) {
      busy = e;
    }
    try {
      trainer.setCounters({ lastOptStep: 0 });
    } catch (e) {
      counters = e;
    }
  });
  assert.deepEqual(seen, {
    gradients,
    names: params.map((q) => q.name),
    state: 2 * model.stateDict().length,
    nc: 5,
    nb: 4,
  });
  assert.equal(stats.batches, 4);
  assert.ok(answeredAt > 0, 'the first batch was reported');
  // The epoch ended no earlier than start + its own duration: the answers came before that.
  assert.ok(
    answeredAt < start + stats.seconds * 1000,
    `answered ${(answeredAt - start).toFixed(0)} ms after the start of a ${(stats.seconds * 1000).toFixed(0)} ms epoch`,
  );
  assert.equal((busy as { code?: string } | undefined)?.code, 'E_BUSY', String(busy));
  assert.equal((counters as { code?: string } | undefined)?.code, 'E_BUSY', String(counters));
  // Nothing was frozen; after the epoch the change goes through.
  assert.equal(model.info().gradients, gradients);
  assert.equal(model.freeze(1).length > 0, true);
  assert.ok(trainer.info().lastOptStep >= 0);
  // The optimizer's momentum (4 bytes per trainable parameter) is now native memory V8 knows of,
  // and is given back on dispose.
  const grown = native().externalMemory() - external;
  assert.ok(grown >= gradients * 4, `V8 was told of ${grown} bytes for ${gradients} parameters`);
  const held = native().externalMemory();
  trainer.dispose();
  assert.ok(held - native().externalMemory() >= gradients * 4, 'given back on dispose');
  model.dispose();
  ema.dispose();
});

test('dispose: later calls are E_DISPOSED, and V8 is told the memory went', async () => {
  const start = native().externalMemory();
  const model = await loadModel({ cfg: 'yolov5n.yaml', nc: 5 });
  const bytes = model.nativeHandle().info().hostBytes;
  // externalMemory() is the addon's own tally (Node's buffers, which a GC frees at any moment,
  // are not in it), so the model's bytes show exactly.
  const near = (delta: number, what: string) =>
    assert.equal(delta, bytes, `${what}: ${delta} bytes for a ${bytes}-byte model`);
  near(native().externalMemory() - start, 'V8 is told the model');
  // Parameters and buffers, float32: about 4 bytes a parameter.
  assert.ok(bytes >= model.info().parameters * 4, `hostBytes ${bytes}`);
  const before = native().externalMemory();
  model.dispose();
  near(before - native().externalMemory(), 'V8 is told the bytes went');
  assert.equal(model.disposed, true);
  assert.throws(() => model.info(), { code: 'E_DISPOSED' });
  assert.throws(() => model.namedParameters(), { code: 'E_DISPOSED' });
  assert.throws(() => model.nativeHandle(), { code: 'E_DISPOSED' });
  await assert.rejects(model.getState(), { code: 'E_DISPOSED' });
  await assert.rejects(model.clone(), { code: 'E_DISPOSED' });
  model.dispose(); // a second dispose does nothing
});

test('the native handle rejects calls after dispose, also ones made before it resolved', async () => {
  const model = await loadModel({ cfg: 'yolov5n.yaml', nc: 5 });
  const handle = model.nativeHandle();
  // A call in flight completes; the memory goes after it.
  const pending = handle.getState();
  handle.dispose();
  assert.ok((await pending).length > 0);
  assert.equal(handle.disposed, true);
  assert.throws(() => handle.info(), { code: 'E_DISPOSED' });
  assert.throws(() => handle.getState(), { code: 'E_DISPOSED' });
  assert.throws(() => handle.setRequiresGrad([], true), { code: 'E_DISPOSED' });
});

test('disposing a model while its trainer runs an epoch aborts the epoch safely', async () => {
  const { model, ema, trainer } = await setup();
  const handle = model.nativeHandle();
  const stats = await trainer.runEpoch(0, true, (p) => {
    if (p.batch === 0) model.dispose();
  });
  assert.equal(stats.aborted, true);
  assert.ok(stats.batches >= 1, `${stats.batches} batches`);
  assert.equal(trainer.disposed, true);
  assert.throws(() => trainer.info(), { code: 'E_DISPOSED' });
  assert.throws(() => trainer.runEpoch(1, true, () => {}), { code: 'E_DISPOSED' });
  trainer.abort(); // always allowed
  await assert.rejects(model.getState(), { code: 'E_DISPOSED' });
  // The EMA was not disposed: it still works; no trainer can be built on the disposed model.
  assert.ok((await ema.getState()).length > 0);
  assert.throws(() => new (native().NativeTrainer)(handle, ema.nativeHandle(), [], options()), {
    code: 'E_DISPOSED',
  });
  ema.dispose();
});

test('trainer.dispose() during an epoch aborts it; the models stay usable', async () => {
  const { model, ema, trainer } = await setup();
  const stats = await trainer.runEpoch(0, true, (p) => {
    if (p.batch === 0) trainer.dispose();
  });
  assert.equal(stats.aborted, true);
  assert.throws(() => trainer.info(), { code: 'E_DISPOSED' });
  assert.equal(model.info().nc, 5);
  assert.ok((await model.getState()).length > 0);
  model.dispose();
  ema.dispose();
});

test('a trainer keeps the model objects it was built on from being collected', async () => {
  const model = await loadModel({ weights });
  // The clone's Model and NativeModel objects are referenced by nothing but the trainer.
  const trainer = new (native().NativeTrainer)(
    (await model.clone()).nativeHandle(),
    null,
    await samples(),
    options(),
  );
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(trainer.disposed, false, 'collecting the model would have disposed its trainer');
  assert.equal(trainer.info().batchesPerEpoch, 4);
  trainer.dispose();
  model.dispose();
});

test('every native option field is required: a missing or mistyped one is a TypeError naming it', async () => {
  const model = await loadModel({ weights });
  const handle = model.nativeHandle();
  const make = (o: Record<string, unknown>) =>
    new (native().NativeTrainer)(handle, null, [], o as unknown as NativeTrainerOptions);
  const { epochs: _epochs, ...noEpochs } = options();
  assert.throws(() => make(noEpochs), {
    name: 'TypeError',
    message: 'NativeTrainer options.epochs: expected an integer but received undefined',
  });
  const hyp = { ...options().hyp, lr0: 'x' };
  assert.throws(() => make({ ...options(), hyp }), {
    message: 'NativeTrainer options.hyp.lr0: expected a number but received a string',
  });
  const { mixup: _mixup, ...noMixup } = options().hyp;
  assert.throws(() => make({ ...options(), hyp: noMixup }), {
    message: /^NativeTrainer options\.hyp\.mixup: expected a number/,
  });
  assert.throws(() => make({ ...options(), workers: '2' }), {
    message: /^NativeTrainer options\.workers: expected an integer/,
  });
  assert.throws(() => make({ ...options(), optimizer: 'Lion' }), {
    message: /^NativeTrainer options\.optimizer: expected "SGD", "Adam" or "AdamW"/,
  });
  const { fl_gamma: _g, ...lossNoGamma } = options().loss;
  assert.throws(() => make({ ...options(), loss: lossNoGamma }), {
    message: /^NativeTrainer options\.loss\.fl_gamma: expected a number/,
  });
  // The other entry points with option objects.
  const input = new Float32Array(3 * 64 * 64);
  await assert.rejects(
    async () =>
      handle.loss(input, [1, 3, 64, 64], new Float32Array(0), lossNoGamma as never, {
        train: false,
        gradNames: [],
        channelsLast: false,
      }),
    { message: /^loss hyp\.fl_gamma: expected a number/ },
  );
  await assert.rejects(
    async () =>
      handle.predict([], {
        imgsz: 64,
        iou: 0.45,
        multiLabel: false,
        agnostic: false,
        maxDet: 300,
      } as never),
    { message: /^predict options\.conf: expected a number but received undefined/ },
  );
  await assert.rejects(async () => native().createModel({ inChannels: 3, layers: [] } as never), {
    message: /^model spec\.activation: expected an object but received undefined/,
  });
  model.dispose();
});

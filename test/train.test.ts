import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { readCheckpoint } from '../lib/checkpoint';
import { loadModel, runtimeInfo, train, type TrainOptions } from '../lib';
import { readHyp } from '../lib/config/hyp';
import { imageWeights } from '../lib/train/train';
import { packageRoot } from '../lib/native/paths';
import { fixture, tempDir } from './helpers';

const data = fixture('shapes5', 'data.yaml');
const weights = fixture('yolov5n-shapes5.pt');
/** Small and fast: the fixture set (64 images) at 128 px, yolov5n from the reference checkpoint. */
function quick(dir: string, extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    data,
    weights,
    imgsz: 128,
    batch: 16,
    epochs: 1,
    workers: 1,
    project: dir,
    name: 'run',
    noautoanchor: true,
    // Plots are test/run-folder.test.ts's subject; here they would only add seconds per run.
    noplots: true,
    ...extra,
  };
}

function halfBits(file: string): Map<string, Uint16Array | Float32Array> {
  const ck = readCheckpoint(file);
  const out = new Map<string, Uint16Array | Float32Array>();
  for (const [k, t] of ck.state)
    if (t.dtype === 'float16' || t.dtype === 'float32') out.set(k, t.data as Uint16Array);
  return out;
}

describe('frozen layers are bit-identical after training', () => {
  for (const freeze of [10, 24] as const) {
    test(`--freeze ${freeze}`, async () => {
      const dir = tempDir();
      const before = await loadModel({ weights });
      const start = new Map((await before.getState()).map((t) => [t.name, t.data as Float32Array]));
      const r = await train(quick(dir, { freeze, epochs: 2 }));
      assert.equal(r.status, 'completed');
      const prefixes = Array.from({ length: freeze }, (_, i) => `model.${i}.`);
      const isFrozen = (n: string) => prefixes.some((p) => n.startsWith(p));
      assert.deepEqual(
        r.frozen,
        before
          .namedParameters()
          .map((p) => p.name)
          .filter(isFrozen),
      );
      let changedTrainable = 0;
      for (const m of [r.model, r.ema]) {
        const params = new Set(m.namedParameters().map((p) => p.name));
        for (const t of await m.getState()) {
          if (!params.has(t.name)) continue;
          const a = t.data as Float32Array;
          const b = start.get(t.name)!;
          const same = a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
          if (isFrozen(t.name)) assert.ok(same, `${t.name} changed`);
          else if (!same) changedTrainable++;
        }
      }
      assert.ok(changedTrainable > 0, 'trainable parameters moved');
      // The saved (half, EMA) weights too: the reference checkpoint was half already.
      const saved = halfBits(r.best!);
      const orig = halfBits(weights);
      for (const name of r.frozen) assert.deepEqual(saved.get(name), orig.get(name), name);
      assert.ok(r.trainableParameters < before.info().parameters);
    });
  }
});

test('a run folder with weights, results.csv, opt.yaml and hyp.yaml; events; the event loop stays responsive', async () => {
  const dir = tempDir();
  runtimeInfo(); // loading the addon (dlopen of LibTorch) is a one-time synchronous cost
  const batches: number[] = [];
  const epochs: number[] = [];
  let maxLag = 0;
  let last = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    maxLag = Math.max(maxLag, now - last - 10);
    last = now;
  }, 10);
  const run = train(quick(dir, { epochs: 2, freeze: 10 }));
  run.on('batch', (b: { batch: number }) => batches.push(b.batch));
  run.on('epoch', (e: { epoch: number }) => epochs.push(e.epoch));
  const r = await run;
  clearInterval(timer);
  // An epoch on the main thread would block for seconds; 500 ms leaves room for a loaded machine.
  assert.ok(maxLag < 500, `event loop lag ${maxLag} ms`);
  assert.deepEqual(epochs, [0, 1]);
  assert.ok(batches.includes(3), 'the last batch of an epoch is always reported');
  const runDir = path.join(dir, 'run');
  assert.equal(r.saveDir, runDir);
  for (const f of ['weights/last.pt', 'weights/best.pt', 'results.csv', 'opt.yaml', 'hyp.yaml']) {
    assert.ok(fs.existsSync(path.join(runDir, f)), f);
  }
  const csv = fs.readFileSync(path.join(runDir, 'results.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, 3);
  assert.match(
    csv[0]!,
    /^epoch,train\/box_loss,train\/obj_loss,train\/cls_loss,metrics\/precision/,
  );
  assert.match(csv[0]!, /,val\/box_loss,val\/obj_loss,val\/cls_loss,x\/lr0,x\/lr1,x\/lr2$/);
  const row = csv[1]!.split(',').map(Number);
  assert.equal(row.length, 14);
  assert.ok(
    row.slice(8, 11).every((v) => v > 0 && v < 1),
    `val losses ${row.slice(8, 11).join(' ')}`,
  );
  // Final files are stripped: EMA weights in half precision, no optimizer, epoch -1.
  const ck = readCheckpoint(r.last!);
  assert.equal(ck.kind, 'yolo5');
  assert.equal(ck.epoch, -1);
  assert.equal(ck.optimizer ?? null, null);
  assert.equal(ck.state.get('model.0.conv.weight')!.dtype, 'float16');
  assert.deepEqual(ck.names, ['ellipse', 'rect', 'triangle', 'cross', 'ring']);
  assert.ok(r.final && r.final.metrics.mAP50 >= 0);
  // A finished checkpoint loads as a model and detects.
  const m = await loadModel({ weights: r.best! });
  assert.equal(m.nc, 5);
});

test('abort finishes the batch, saves last.pt and resolves aborted; --resume continues and finishes', async () => {
  const dir = tempDir();
  const controller = new AbortController();
  const run = train(quick(dir, { epochs: 3, signal: controller.signal, hyp: { lr0: 0.02 } }));
  run.on('epoch', (e: { epoch: number }) => {
    if (e.epoch === 0) controller.abort();
  });
  const r = await run;
  assert.equal(r.status, 'aborted');
  assert.equal(r.epochs.length, 1);
  const ck = readCheckpoint(r.last!);
  assert.equal(ck.epoch, 0);
  assert.ok(ck.optimizer, 'a resumable checkpoint keeps the optimizer');
  const resumed = await train({ resume: r.last!, workers: 1 });
  assert.equal(resumed.status, 'completed');
  assert.deepEqual(
    resumed.epochs.map((e) => e.epoch),
    [1, 2],
  );
  const csv = fs.readFileSync(path.join(r.saveDir, 'results.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, 4);
  // The resumed run kept its hyperparameters.
  assert.equal((readCheckpoint(resumed.last!).hyp as { lr0: number }).lr0, 0.02);
});

test('a killed training process resumes from its last.pt', async () => {
  const dir = tempDir();
  const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
  const args = [
    'train',
    '--data',
    data,
    '--weights',
    weights,
    '--img',
    '128',
    '--batch',
    '16',
    '--epochs',
    '3',
    '--workers',
    '1',
    '--noautoanchor',
    '--project',
    dir,
    '--name',
    'k',
  ];
  const child = spawn(process.execPath, [cli, ...args], { cwd: packageRoot(), stdio: 'ignore' });
  const csv = path.join(dir, 'k', 'results.csv');
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Kill it (no chance to clean up) once the first epoch's checkpoint exists.
  for (let i = 0; i < 600; i++) {
    if (fs.existsSync(csv) && fs.readFileSync(csv, 'utf8').trim().split('\n').length >= 2) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  await exited;
  const ck = readCheckpoint(path.join(dir, 'k', 'weights', 'last.pt'));
  assert.ok(
    ck.epoch !== undefined && ck.epoch >= 0 && ck.epoch < 2,
    `killed after epoch ${ck.epoch}`,
  );
  const r = await train({ resume: path.join(dir, 'k', 'weights', 'last.pt'), workers: 1 });
  assert.equal(r.status, 'completed');
  assert.equal(r.epochs.at(-1)!.epoch, 2);
});

test('--resume without a path picks the newest run under --project', async () => {
  const dir = tempDir();
  const controller = new AbortController();
  const run = train(quick(dir, { epochs: 2, signal: controller.signal }));
  run.on('epoch', () => controller.abort());
  await run;
  const r = await train({ resume: true, project: dir, workers: 1 });
  assert.equal(r.status, 'completed');
});

test('training is deterministic on CPU with a seed', async () => {
  const dir = tempDir();
  const a = await train(quick(dir, { seed: 3, name: 'a', freeze: 24, workers: 2 }));
  const b = await train(quick(dir, { seed: 3, name: 'b', freeze: 24, workers: 2 }));
  assert.deepEqual(
    a.epochs.map((e) => [e.box, e.obj, e.cls]),
    b.epochs.map((e) => [e.box, e.obj, e.cls]),
  );
});

describe('bad training input is a clear error', () => {
  test('data, hyp, sizes, weights', async () => {
    const dir = tempDir();
    const noTrain = path.join(dir, 'no-train.yaml');
    fs.writeFileSync(
      noTrain,
      `path: ${fixture('shapes5')}\nval: images/val\nnames: [a, b, c, d, e]\n`,
    );
    await assert.rejects(train(quick(dir, { data: noTrain })), {
      code: 'E_DATA',
      message: /missing train/,
    });
    const badNc = path.join(dir, 'bad-nc.yaml');
    fs.writeFileSync(
      badNc,
      `path: ${fixture('shapes5')}\ntrain: images/val\nval: images/val\nnc: 4\nnames: [a, b, c, d, e]\n`,
    );
    await assert.rejects(train(quick(dir, { data: badNc })), {
      code: 'E_DATA',
      message: /nc is 4 but names has 5/,
    });
    fs.mkdirSync(path.join(dir, 'empty', 'images'), { recursive: true });
    const empty = path.join(dir, 'empty.yaml');
    fs.writeFileSync(
      empty,
      `path: ${path.join(dir, 'empty')}\ntrain: images\nval: images\nnames: [a]\n`,
    );
    await assert.rejects(train(quick(dir, { data: empty, weights: undefined, cfg: 'yolov5n' })), {
      code: 'E_DATA',
      message: /no images/,
    });
    await assert.rejects(train(quick(dir, { batch: 0 })), {
      message: 'Expected integer >= 1 for batch but received 0',
    });
    await assert.rejects(train(quick(dir, { weights: path.join(dir, 'nope.pt') })), {
      code: 'E_FILE',
    });
    const hyp = path.join(dir, 'hyp.yaml');
    fs.writeFileSync(hyp, 'lr0: -1\n');
    await assert.rejects(train(quick(dir, { hyp })), { code: 'E_ARG', message: /lr0/ });
    const warnings: string[] = [];
    fs.writeFileSync(hyp, 'lr0: 0.01\nbogus: 3\n');
    const h = readHyp(hyp, (l) => warnings.push(l));
    assert.equal(h.lr0, 0.01);
    assert.ok(warnings.some((w) => /unknown hyperparameter "bogus"/.test(w)));
  });

  test('an image size that is not a multiple of the stride is rounded up with a warning', async () => {
    const dir = tempDir();
    const lines: string[] = [];
    const r = await train(quick(dir, { imgsz: 100, noval: true, log: (l) => lines.push(l) }));
    assert.equal(r.status, 'completed');
    assert.ok(
      lines.some((l) => /imgsz 100 must be a multiple of max stride 32, updating to 128/.test(l)),
    );
  });
});

test('image weights favour rare and poorly detected classes', () => {
  const items = [
    { labels: [[0, 0.5, 0.5, 0.1, 0.1]] },
    { labels: [[0, 0.5, 0.5, 0.1, 0.1]] },
    { labels: [[1, 0.5, 0.5, 0.1, 0.1]] },
  ];
  const w = imageWeights(items, 2);
  assert.ok(w[2]! > w[0]!, 'the rare class weighs more');
  assert.equal(w[0], w[1]);
  const maps = Float64Array.from([0.9, 0.9]);
  const w2 = imageWeights(items, 2, Float64Array.from([0.0, 0.9]));
  assert.ok(w2[0]! / w2[2]! > w[0]! / w[2]!, 'a badly detected class gains weight');
  assert.ok(imageWeights(items, 2, maps).every((v) => v > 0));
});

test('--image-weights, --multi-scale, --rect and --cache run end to end', async () => {
  const dir = tempDir();
  const sizes = new Set<number>();
  const run = train(
    quick(dir, { epochs: 2, imageWeights: true, multiScale: true, name: 'iw', noval: true }),
  );
  run.on('batch', (b: { size: number }) => sizes.add(b.size));
  assert.equal((await run).status, 'completed');
  assert.ok(
    [...sizes].every((s) => s % 32 === 0 && s >= 64 && s <= 192),
    `sizes ${[...sizes]}`,
  );
  const rect = await train(quick(dir, { rect: true, cache: true, name: 'rect', noval: true }));
  assert.equal(rect.status, 'completed');
});

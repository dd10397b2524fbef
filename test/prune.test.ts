import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { loadModel, val, type Model } from '../lib';
import { readModelConfig } from '../lib/config/model';
import { defaultPrunedPath } from '../lib/cli/prune';
import { packageRoot } from '../lib/native/paths';
import { fixture, tempDir } from './helpers';

const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
const checkpoint = fixture('yolov5n-shapes5.pt');

/** yolov5n shrunk to 1/8 width and 1/3 depth: about 30k conv weights. */
function tinyModel(): Promise<Model> {
  const { config } = readModelConfig('yolov5n');
  return loadModel({ cfg: { ...config, nc: 3, depth_multiple: 0.33, width_multiple: 0.125 } });
}

type State = Awaited<ReturnType<Model['getState']>>;
const isConv = (t: State[number]) => t.name.endsWith('.weight') && t.shape.length === 4;

/** The slow, obviously-correct answer: sort (|w|, position) and take the first k. */
function referenceMask(convs: Float32Array[], k: number): Uint8Array {
  const all: { a: number; i: number }[] = [];
  let i = 0;
  for (const d of convs) for (const v of d) all.push({ a: Math.abs(v), i: i++ });
  all.sort((x, y) => x.a - y.a || x.i - y.i);
  const mask = new Uint8Array(all.length);
  for (let j = 0; j < k; j++) mask[all[j]!.i] = 1;
  return mask;
}

test('prune 0.3 zeros exactly the 30% smallest conv weights and nothing else; the file reloads with the zeros', async () => {
  const model = await tinyModel();
  const before = await model.getState();
  const convsBefore = before.filter(isConv).map((t) => t.data as Float32Array);
  const n = convsBefore.reduce((s, d) => s + d.length, 0);
  const r = await model.prune(0.3);
  assert.equal(r.convWeights, n);
  assert.ok(Math.abs(r.convZeros - 0.3 * n) <= 1, `${r.convZeros} zeros of ${n}`);
  assert.equal(r.convSparsity, r.convZeros / n);
  assert.equal(r.layers.length, convsBefore.length);

  const after = await model.getState();
  const expected = referenceMask(convsBefore, Math.round(0.3 * n));
  let at = 0;
  after.forEach((t, j) => {
    const old = before[j]!;
    assert.equal(t.name, old.name);
    if (!isConv(t)) {
      // BatchNorm, biases, anchors and counters are untouched.
      assert.deepEqual(t.data, old.data, `${t.name} changed`);
      return;
    }
    const d = t.data as Float32Array;
    const o = old.data as Float32Array;
    for (let i = 0; i < d.length; i++, at++) {
      assert.equal(d[i], expected[at] ? 0 : o[i], `${t.name}[${i}]`);
    }
  });
  assert.ok(r.threshold > 0);
  // Overall sparsity counts every zero parameter (a fresh model's BatchNorm biases are zero too).
  const kinds = new Map(model.stateDict().map((e) => [e.name, e.kind]));
  const params = after.filter((t) => kinds.get(t.name) === 'param');
  assert.equal(
    r.zeros,
    params.reduce((s, t) => s + (t.data as Float32Array).filter((v) => v === 0).length, 0),
  );
  assert.equal(
    r.parameters,
    params.reduce((s, t) => s + t.data.length, 0),
  );
  assert.equal(r.parameters, model.info().parameters);

  const dir = tempDir();
  const file = path.join(dir, 'pruned.pt');
  await model.save(file);
  const reloaded = await loadModel({ weights: file });
  const state = await reloaded.getState();
  after.forEach((t, j) => assert.deepEqual(state[j]!.data, t.data, t.name));
  fs.rmSync(dir, { recursive: true });
});

test('ties at the threshold: equal magnitudes are taken in state-dict order, the count stays exact', async () => {
  const model = await tinyModel();
  const convs = (await model.getState()).filter(isConv);
  // Every weight ±0.5: one magnitude, so the choice is all ties.
  for (const t of convs) (t.data as Float32Array).forEach((_, i, a) => (a[i] = i % 2 ? 0.5 : -0.5));
  await model.loadState(convs);
  const n = convs.reduce((s, t) => s + t.data.length, 0);
  const r = await model.prune(0.45);
  assert.equal(r.convZeros, Math.round(0.45 * n));
  assert.equal(r.threshold, 0.5);
  const flat = (await model.getState())
    .filter(isConv)
    .flatMap((t) => Array.from(t.data as Float32Array));
  const firstKept = flat.findIndex((v) => v !== 0);
  assert.equal(firstKept, r.convZeros);
  assert.ok(flat.slice(firstKept).every((v) => Math.abs(v) === 0.5));
  // Pruning again to a lower amount changes nothing: the zeros are already the smallest.
  const again = await model.prune(0.2);
  assert.equal(again.convZeros, r.convZeros);
});

test('prune on a fused model uses the folded weights; frozen flags are kept', async () => {
  const model = await tinyModel();
  await model.fuse();
  const frozen = model.freeze(2);
  const r = await model.prune(0.5);
  assert.ok(Math.abs(r.convZeros - 0.5 * r.convWeights) <= 1);
  assert.ok(r.layers.every((l) => !l.name.includes('.bn.')));
  const stillFrozen = model
    .namedParameters()
    .filter((p) => !p.requiresGrad)
    .map((p) => p.name);
  assert.ok(frozen.length > 0);
  assert.deepEqual(stillFrozen, frozen);
});

test('amounts outside (0, 1) are refused by name and value', async () => {
  const model = await tinyModel();
  for (const bad of [0, 1, -0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '0.3' as never]) {
    await assert.rejects(model.prune(bad), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'E_ARG');
      assert.match(
        e.message,
        /^Expected number between 0 and 1 \(exclusive\) for amount but received/,
      );
      return true;
    });
  }
  // Nothing was zeroed by the refused calls.
  const zeros = (await model.getState())
    .filter(isConv)
    .reduce((s, t) => s + (t.data as Float32Array).filter((v) => v === 0).length, 0);
  assert.equal(zeros, 0);
});

test('yolo5 prune CLI writes a new checkpoint, refuses to overwrite it, and val runs on it', async () => {
  const dir = tempDir();
  const out = path.join(dir, 'pruned.pt');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'prune', ...args], { encoding: 'utf8', cwd: packageRoot() });
  const r = run('--weights', checkpoint, '--amount', '0.3', '--out', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Pruned to 30\.0% global sparsity \(\d+\.\d% of all parameters\)$/m);
  assert.match(r.stdout, /Saved /);
  assert.ok(fs.existsSync(out));
  const size = fs.statSync(out).size;

  const again = run('--weights', checkpoint, '--amount', '0.5', '--out', out);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists: pass --force/);
  assert.equal(fs.statSync(out).size, size);

  for (const bad of ['0', '1', 'abc', '-0.5']) {
    const b = run('--weights', checkpoint, '--amount', bad, '--out', path.join(dir, 'x.pt'));
    assert.notEqual(b.status, 0);
    assert.match(b.stderr, /Expected number between 0 and 1 \(exclusive\) for --amount/);
  }
  assert.ok(!fs.existsSync(path.join(dir, 'x.pt')));

  const pruned = await loadModel({ weights: out });
  const convs = (await pruned.getState()).filter(isConv);
  const n = convs.reduce((s, t) => s + t.data.length, 0);
  const zeros = convs.reduce(
    (s, t) => s + (t.data as Float32Array).filter((v) => v === 0).length,
    0,
  );
  assert.ok(Math.abs(zeros - 0.3 * n) <= 1, `${zeros}/${n}`);

  const res = await val({ weights: out, data: fixture('shapes5', 'data.yaml'), imgsz: 256 });
  assert.equal(res.images, 64);
  for (const v of [
    res.metrics.precision,
    res.metrics.recall,
    res.metrics.mAP50,
    res.metrics.mAP50_95,
  ])
    assert.ok(Number.isFinite(v) && v >= 0 && v <= 1, `metric ${v}`);
  fs.rmSync(dir, { recursive: true });
});

test('default output name sits beside the weights', () => {
  assert.equal(
    defaultPrunedPath(path.join('runs', 'exp', 'best.pt'), 0.3),
    path.join('runs', 'exp', 'best-pruned0.3.pt'),
  );
});

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { readCheckpoint } from '../lib/checkpoint';
import { detect, loadModel, train } from '../lib';
import { packageRoot } from '../lib/native/paths';
import { fixture, golden, readBin, relMaxDiff, tempDir } from './helpers';

const g = golden();
const pt = fixture('yolov5n-shapes5.pt');

test('the reference checkpoint (.pt) loads with its own config, names and weights, and detects like the reference', async () => {
  const model = await loadModel({ weights: pt });
  assert.deepEqual(model.names, ['ellipse', 'rect', 'triangle', 'cross', 'ring']);
  assert.equal(model.transfer?.transferred, 349);
  const sd = await loadModel({
    cfg: g.yaml as never,
    weights: fixture('yolov5n-shapes5.state_dict.pt'),
  });
  const a = await model.getState();
  const b = await sd.getState();
  assert.deepEqual(
    a.map((t) => t.name),
    b.map((t) => t.name),
  );
  a.forEach((t, i) => assert.deepEqual(t.data, b[i]!.data, t.name));
  const c = g.forward[1]!;
  const out = await model.forward(readBin(c.input), c.input.shape);
  assert.ok(relMaxDiff(out.output!.data, readBin(c.output)).rel <= 1e-5);
  const det = g.detect[0] as { results: Record<string, number[][]> };
  const [r] = await detect(fixture('shapes5', 'images', 'val', '00000.jpg'), { model, imgsz: 256 });
  assert.deepEqual(
    r!.boxes.map((x) => x.class).reverse(),
    det.results['00000.jpg']!.map((row) => row[0]),
  );
});

test('transfer to another nc: every tensor but the Detect convs (343/349)', async () => {
  const lines: string[] = [];
  const model = await loadModel({ weights: pt, nc: 3, log: (l) => lines.push(l) });
  assert.equal(model.nc, 3);
  assert.equal(model.transfer?.transferred, 343);
  assert.deepEqual(model.transfer?.mismatched, [
    'model.24.m.0.weight',
    'model.24.m.0.bias',
    'model.24.m.1.weight',
    'model.24.m.1.bias',
    'model.24.m.2.weight',
    'model.24.m.2.bias',
  ]);
  assert.ok(lines.includes(`Transferred 343/349 items from ${pt}`));
  // Anchors come from the checkpoint.
  assert.deepEqual(model.info().anchors, g.anchors_grid_units);
});

test('fine-tuning from the reference checkpoint with a different nc trains', async () => {
  const dir = tempDir();
  const r = await train({
    data: fixture('shapes5', 'data.yaml'),
    weights: pt,
    singleCls: true,
    imgsz: 128,
    batch: 16,
    epochs: 1,
    workers: 1,
    freeze: 10,
    project: dir,
    noautoanchor: true,
  });
  assert.equal(r.status, 'completed');
  const ck = readCheckpoint(r.best!);
  assert.equal(ck.nc, 1);
  assert.deepEqual(ck.names, ['item']);
  assert.deepEqual(ck.state.get('model.24.m.0.weight')!.shape, [18, 64, 1, 1]);
});

test('Model.save writes a checkpoint that loads back identically (float32 and half)', async () => {
  const dir = tempDir();
  const model = await loadModel({ weights: pt });
  const f32 = path.join(dir, 'm.pt');
  await model.save(f32);
  const back = await loadModel({ weights: f32 });
  assert.deepEqual(back.names, model.names);
  const a = await model.getState();
  const b = await back.getState();
  a.forEach((t, i) => assert.deepEqual(b[i]!.data, t.data, t.name));
  const f16 = path.join(dir, 'h.pt');
  await model.save(f16, { half: true });
  const ck = readCheckpoint(f16);
  assert.equal(ck.state.get('model.0.conv.weight')!.dtype, 'float16');
  // The reference weights were half already: half saving loses nothing.
  const orig = readCheckpoint(pt);
  assert.deepEqual(
    ck.state.get('model.0.conv.weight')!.data,
    orig.state.get('model.0.conv.weight')!.data,
  );
});

test('yolo5 inspect and yolo5 params --weights', () => {
  const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: packageRoot() });
  const i = run('inspect', pt, '--json');
  assert.equal(i.status, 0, i.stderr);
  const info = JSON.parse(i.stdout) as {
    kind: string;
    tensorCount: number;
    dtypes: string[];
    names: string[];
  };
  assert.equal(info.kind, 'yolov5');
  assert.equal(info.tensorCount, 349);
  assert.deepEqual(info.dtypes.sort(), ['float16', 'int64']);
  const p = run('params', '--weights', pt);
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /Transferred 349\/349 items/);
  assert.match(p.stdout, /summary: 214 layers, 1,770,682 parameters/);
  const bad = run('inspect', path.join(tempDir(), 'missing.pt'));
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /missing\.pt/);
});

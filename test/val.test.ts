import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { val } from '../lib';
import { readDataConfig } from '../lib/config/data';
import { labelPathFor, readLabels } from '../lib/data/labels';
import { loadSplit, rectBatches } from '../lib/data/split';
import { fixture, golden, goldenModel, runCli, tempDir } from './helpers';

const g = golden();
const gv = g.val as {
  P: number;
  R: number;
  mAP50: number;
  'mAP50-95': number;
  'per_class_mAP50-95': number[];
};

test('val on the fixture data set gives the reference P, R, mAP50, mAP50-95 (±0.002)', async () => {
  const lines: string[] = [];
  const r = await val({
    model: await goldenModel(),
    data: fixture('shapes5', 'data.yaml'),
    imgsz: 256,
    log: (l) => lines.push(l),
  });
  const close = (name: string, got: number, want: number) =>
    assert.ok(Math.abs(got - want) <= 0.002, `${name}: ${got} vs reference ${want}`);
  close('P', r.metrics.precision, gv.P);
  close('R', r.metrics.recall, gv.R);
  close('mAP50', r.metrics.mAP50, gv.mAP50);
  close('mAP50-95', r.metrics.mAP50_95, gv['mAP50-95']);
  gv['per_class_mAP50-95'].forEach((want, c) =>
    close(`class ${c} mAP50-95`, r.perClass[c]!.mAP50_95, want),
  );
  assert.equal(r.metrics.fitness, 0.1 * r.metrics.mAP50 + 0.9 * r.metrics.mAP50_95);
  assert.equal(r.images, 64);
  assert.equal(r.instances, 237);
  assert.deepEqual(
    r.perClass.map((c) => c.name),
    ['ellipse', 'rect', 'triangle', 'cross', 'ring'],
  );
  assert.equal(r.confusion.length, 6);
  assert.match(
    lines.join('\n'),
    /\s+Class\s+Images\s+Instances\s+P\s+R\s+mAP50\s+mAP50-95\n\s+all\s+64\s+237\s+0\.11\s+0\.231\s+0\.09\s+0\.0288/,
  );
  assert.ok(r.speed.inference > 0);
});

test('rect batches: square 256 px images at --img 256 are letterboxed to 288x288', () => {
  const items = Array.from({ length: 40 }, (_, i) => ({
    file: `${i}`,
    width: 256,
    height: 256,
    labels: [],
  }));
  const b = rectBatches(items, 32, 256, 32);
  assert.deepEqual(
    b.map((x) => [x.indices.length, x.shape]),
    [
      [32, [288, 288]],
      [8, [288, 288]],
    ],
  );
  // Wide images give short batches: 640x480 at 640 → 512x672 (h x w) with pad 0.5.
  const wide = rectBatches([{ file: 'a', width: 640, height: 480, labels: [] }], 1, 640, 32);
  assert.deepEqual(wide[0]!.shape, [512, 672]);
});

test('data yaml: names as a map, relative path, nc mismatch; labels path and bad rows', () => {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'set', 'images', 'val'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'set', 'labels', 'val'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'd.yaml'), 'path: set\nval: images/val\nnames: {0: a, 1: b}\n');
  const d = readDataConfig(path.join(dir, 'd.yaml'));
  assert.deepEqual(d.names, ['a', 'b']);
  assert.deepEqual(d.val, [path.join(dir, 'set', 'images', 'val')]);
  fs.writeFileSync(path.join(dir, 'bad.yaml'), 'val: x\nnc: 3\nnames: [a, b]\n');
  assert.throws(() => readDataConfig(path.join(dir, 'bad.yaml')), {
    code: 'E_DATA',
    message: /nc is 3 but names has 2/,
  });
  assert.equal(labelPathFor('/d/images/val/x.jpg'), '/d/labels/val/x.txt');
  const lbl = path.join(dir, 'l.txt');
  const cases: [string, RegExp][] = [
    ['0 0.5 0.5 0.1', /:1: expected 5 columns/],
    ['0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1', /:2: class "2" is not an integer in 0…1/],
    ['0 0.5 1.5 0.1 0.1', /coordinates must be normalised/],
    ['0 0.5 x 0.1 0.1', /"x" is not a number/],
    ['0 -0.5 0.5 0.1 0.1', /negative value/],
  ];
  for (const [text, re] of cases) {
    fs.writeFileSync(lbl, text);
    assert.throws(
      () => readLabels(lbl, 2),
      (e: unknown) => {
        assert.equal((e as { code: string }).code, 'E_DATA_LABEL');
        assert.match((e as Error).message, re);
        assert.ok((e as Error).message.startsWith(lbl));
        return true;
      },
    );
  }
  fs.writeFileSync(lbl, '1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.3 0.1 0.3 0.3\n');
  const ok = readLabels(lbl, 2);
  assert.equal(ok.rows.length, 2);
  assert.match(ok.warnings[0]!, /:2: duplicate row removed/);
  // A polygon row becomes its bounding box.
  assert.deepEqual(
    ok.rows[1]!.map((v) => Math.round(v * 1e6) / 1e6),
    [0, 0.2, 0.2, 0.2, 0.2],
  );
  assert.equal(readLabels(path.join(dir, 'none.txt'), 2).status, 'missing');
});

test('val skips corrupt images and bad label files with warnings, counts missing labels as background', async () => {
  const dir = tempDir();
  const img = path.join(dir, 'images', 'val');
  const lab = path.join(dir, 'labels', 'val');
  fs.mkdirSync(img, { recursive: true });
  fs.mkdirSync(lab, { recursive: true });
  const src = fixture('shapes5', 'images', 'val');
  for (const f of ['00000', '00001', '00002'])
    fs.copyFileSync(path.join(src, `${f}.jpg`), path.join(img, `${f}.jpg`));
  fs.copyFileSync(fixture('shapes5', 'labels', 'val', '00000.txt'), path.join(lab, '00000.txt'));
  fs.writeFileSync(path.join(lab, '00001.txt'), '9 0.5 0.5 0.1 0.1\n'); // class out of range
  // 00002 has no label file: a background image.
  fs.writeFileSync(path.join(img, 'broken.jpg'), 'not an image');
  fs.writeFileSync(
    path.join(dir, 'data.yaml'),
    `path: ${dir}\nval: images/val\nnames: ${JSON.stringify(Object.values(g.names))}\n`,
  );
  const warnings: string[] = [];
  const r = await val({
    model: await goldenModel(),
    data: path.join(dir, 'data.yaml'),
    imgsz: 256,
    log: (l) => warnings.push(l),
  });
  assert.equal(r.images, 2);
  assert.equal(r.instances, 4);
  const text = warnings.join('\n');
  assert.match(text, /broken\.jpg: ignoring corrupt image/);
  assert.match(text, /00001\.txt:1: class "9"/);
  assert.match(text, /val: 4 images, 1 labelled, 1 missing labels, 0 empty, 2 corrupt/);
});

test('yolo5 val CLI prints the table and writes the run folder', () => {
  const dir = tempDir();
  const cfg = path.join(dir, 'model.yaml');
  fs.writeFileSync(cfg, JSON.stringify(g.yaml));
  // A plain state dict needs its model yaml.
  const model = ['--weights', fixture('yolov5n-shapes5.state_dict.pt'), '--cfg', cfg];
  const r = runCli(
    'val',
    ...model,
    '--data',
    fixture('shapes5', 'data.yaml'),
    '--img',
    '256',
    '--save-txt',
    '--save-json',
    '--project',
    dir,
    '--name',
    'v',
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\s+all\s+64\s+237\s+0\.11\s+0\.231\s+0\.09\s+0\.0288/);
  const run = path.join(dir, 'v');
  assert.match(fs.readFileSync(path.join(run, 'results.txt'), 'utf8'), /mAP50-95/);
  const metrics = JSON.parse(fs.readFileSync(path.join(run, 'metrics.json'), 'utf8')) as {
    metrics: { mAP50: number };
  };
  assert.ok(Math.abs(metrics.metrics.mAP50 - gv.mAP50) < 0.002);
  assert.equal(fs.readdirSync(path.join(run, 'labels')).length, 64);
  const preds = JSON.parse(fs.readFileSync(path.join(run, 'predictions.json'), 'utf8')) as {
    image_id: number;
  }[];
  assert.ok(preds.length > 0 && typeof preds[0]!.image_id === 'number');
  const bad = runCli('val', ...model, '--data', path.join(dir, 'nope.yaml'));
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /Data file ".*nope\.yaml" not found/);
});

test('label verification is cached outside the data set and redone when a label changes', async () => {
  const dir = tempDir();
  const img = path.join(dir, 'images');
  const lab = path.join(dir, 'labels');
  fs.mkdirSync(img);
  fs.mkdirSync(lab);
  fs.copyFileSync(fixture('shapes5', 'images', 'val', '00000.jpg'), path.join(img, 'a.jpg'));
  fs.writeFileSync(path.join(lab, 'a.txt'), '0 0.5 0.5 0.2 0.2\n');
  fs.writeFileSync(
    path.join(dir, 'd.yaml'),
    `path: ${dir}\ntrain: images\nval: images\nnames: [a, b]\n`,
  );
  const d = readDataConfig(path.join(dir, 'd.yaml'));
  const logs: string[] = [];
  const first = await loadSplit(d, 'val', (l) => logs.push(l));
  const second = await loadSplit(d, 'val', (l) => logs.push(l));
  assert.deepEqual(second, first);
  assert.ok(!logs[0]!.endsWith('(cached)') && logs[1]!.endsWith('(cached)'), logs.join('\n'));
  assert.deepEqual(
    fs.readdirSync(dir).sort(),
    ['d.yaml', 'images', 'labels'],
    'nothing written into the data set',
  );
  fs.writeFileSync(path.join(lab, 'a.txt'), '1 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n');
  const third = await loadSplit(d, 'val', (l) => logs.push(l));
  assert.equal(third[0]!.labels.length, 2);
  assert.ok(!logs[2]!.endsWith('(cached)'));
});

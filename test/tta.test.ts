import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { detect, Ensemble, loadModel, val, Yolo5Error, type Box } from '../lib';
import type { Model } from '../lib/model/model';
import { native, type NativePredictOptions } from '../lib/native/addon';
import { packageRoot } from '../lib/native/paths';
import { fixture, golden, goldenModel, tempDir } from './helpers';

const g = golden();
const gv = g.val as { mAP50: number; 'mAP50-95': number };
const image = (name: string) => fixture('shapes5', 'images', 'val', name);
const checkpoint = fixture('yolov5n-shapes5.pt');
const dir = tempDir('yolo5-tta-');

/** Every candidate out of NMS: nothing is under conf 0, nothing overlaps more than IoU 1. */
const everything: NativePredictOptions = {
  imgsz: 256,
  conf: 0,
  iou: 1,
  maxDet: 1_000_000,
  multiLabel: false,
  agnostic: false,
};

/** A fixture JPEG's RGB pixels (through the lossless BMP encoder). */
async function rgbOf(file: string): Promise<{ data: Uint8Array; width: number; height: number }> {
  const bmp = (await native().drawDetections(file, [], { format: 'bmp' }))!;
  const off = bmp[10]! | (bmp[11]! << 8);
  const width = bmp[18]! | (bmp[19]! << 8);
  const height = bmp[22]! | (bmp[23]! << 8);
  const stride = Math.ceil((width * 3) / 4) * 4;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++)
        data[(y * width + x) * 3 + c] = bmp[off + (height - 1 - y) * stride + x * 3 + (2 - c)]!;
  return { data, width, height };
}

function mirror(img: { data: Uint8Array; width: number; height: number }) {
  const { width: w, height: h } = img;
  const data = new Uint8Array(img.data.length);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++)
        data[(y * w + x) * 3 + c] = img.data[(y * w + (w - 1 - x)) * 3 + c]!;
  return { data, width: w, height: h };
}

/** Rows of 6 (x1 y1 x2 y2 conf cls). */
function rows(d: Float32Array): number[][] {
  const out: number[][] = [];
  for (let k = 0; k + 6 <= d.length; k += 6) out.push(Array.from(d.subarray(k, k + 6)));
  return out;
}

function assertRowsClose(got: number[][], want: number[][], tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: ${got.length} rows vs ${want.length}`);
  let worst = 0;
  let at = -1;
  got.forEach((r, i) =>
    r.forEach((v, j) => {
      const d = Math.abs(v - want[i]![j]!);
      if (d > worst) [worst, at] = [d, i];
    }),
  );
  assert.ok(worst <= tol, `${what}: largest difference ${worst} at row ${at}`);
}

const sortBoxes = (bs: Box[]) =>
  [...bs].sort((a, b) => b.confidence - a.confidence || a.x1 - b.x1 || a.y1 - b.y1);

/** The golden weights with the head's weights scaled by 1.25 (more confident): a second, different model of 5 classes. */
async function perturbed(): Promise<Model> {
  const m = await (await goldenModel()).clone();
  const head = (await m.getState()).filter((t) => /^model\.24\.m\.\d\.weight$/.test(t.name));
  assert.equal(head.length, 3);
  await m.loadState(
    head.map((t) => ({ ...t, data: (t.data as Float32Array).map((v) => v * 1.25) })),
  );
  return m;
}

test('augment runs the reference passes and trims them: row counts at 256 px', async () => {
  const model = await goldenModel();
  const count = async (extra: Partial<NativePredictOptions>) => {
    const { results } = await model.predict([image('00000.jpg')], { ...everything, ...extra });
    return results[0]!.detections.length / 6;
  };
  // Plain: 3 anchors × (32² + 16² + 8²) cells.
  assert.equal(await count({}), 3 * (1024 + 256 + 64));
  // Scale 1 without its stride-32 rows (3840); 0.83 → 212 px padded to 224, all levels (3087);
  // 0.67 → 171 px padded to 192, without its stride-8 rows (540).
  assert.equal(await count({ augment: true }), 3 * (1024 + 256) + 3 * (784 + 196 + 49) + 3 * 180);
  // One pass: nothing trimmed; two passes: first loses stride 32, last loses stride 8.
  assert.equal(await count({ tta: [{ scale: 1, flip: true }] }), 4032);
  assert.equal(
    await count({
      tta: [
        { scale: 1, flip: false },
        { scale: 1, flip: true },
      ],
    }),
    3 * (1024 + 256) + 3 * (256 + 64),
  );
  await assert.rejects(
    model.predict([image('00000.jpg')], { ...everything, tta: [{ scale: 1.5, flip: false }] }),
    /tta: scale must be in \(0, 1\], got 1\.5/,
  );
});

test('a flipped pass, de-augmented, equals the plain pass on the mirrored image mirrored back', async () => {
  const model = await goldenModel();
  const img = await rgbOf(image('00003.jpg'));
  assert.deepEqual([img.width, img.height], [256, 256]); // no resize, no padding at 256
  const flipped = await model.predict([img], { ...everything, tta: [{ scale: 1, flip: true }] });
  const onMirror = await model.predict([mirror(img)], everything);
  const plain = await model.predict([img], everything);
  const got = rows(flipped.results[0]!.detections);
  const want = rows(onMirror.results[0]!.detections).map(([x1, y1, x2, y2, c, k]) => [
    256 - x2!,
    y1!,
    256 - x1!,
    y2!,
    c!,
    k!,
  ]);
  // The same network input, so the same scores in the same order; boxes up to float rounding.
  assertRowsClose(got, want, 1e-3, 'flipped pass vs mirrored input');
  // The model is not mirror-symmetric: the flipped pass really is a different prediction.
  const p = rows(plain.results[0]!.detections);
  assert.ok(p.some((r, i) => Math.abs(r[4]! - got[i]![4]!) > 1e-3));
});

test('a scaled pass is de-scaled: scale 0.5 of a 2×-blown-up image equals the small image ×2', async () => {
  const model = await goldenModel();
  const big = await rgbOf(image('00005.jpg'));
  // 128 px image, and the same blown up to 256 px by pixel doubling: bilinear halving with
  // half-pixel centres averages 2×2 equal pixels, so the scaled pass sees the small image exactly.
  const small = { data: new Uint8Array(128 * 128 * 3), width: 128, height: 128 };
  for (let y = 0; y < 128; y++)
    for (let x = 0; x < 128; x++)
      for (let c = 0; c < 3; c++)
        small.data[(y * 128 + x) * 3 + c] = big.data[(2 * y * 256 + 2 * x) * 3 + c]!;
  for (let y = 0; y < 256; y++)
    for (let x = 0; x < 256; x++)
      for (let c = 0; c < 3; c++)
        big.data[(y * 256 + x) * 3 + c] = small.data[((y >> 1) * 128 + (x >> 1)) * 3 + c]!;
  const scaled = await model.predict([big], { ...everything, tta: [{ scale: 0.5, flip: false }] });
  const direct = await model.predict([small], { ...everything, imgsz: 128 });
  const want = rows(direct.results[0]!.detections).map((r) => [
    ...r.slice(0, 4).map((v) => v * 2),
    r[4]!,
    r[5]!,
  ]);
  assert.equal(want.length, 3 * (256 + 64 + 16));
  assertRowsClose(rows(scaled.results[0]!.detections), want, 1e-3, 'scale 0.5 pass');
});

test('detect --augment changes the predictions on the fixture images', async () => {
  const model = await goldenModel();
  const files = ['00000.jpg', '00001.jpg', '00002.jpg', '00003.jpg'].map(image);
  const plain = await detect(files, { model, imgsz: 256, conf: 0.1 });
  const aug = await detect(files, { model, imgsz: 256, conf: 0.1, augment: true });
  const key = (bs: Box[]) => JSON.stringify(sortBoxes(bs));
  assert.ok(
    plain.some((r, i) => key(r.boxes) !== key(aug[i]!.boxes)),
    'augment gave the same boxes as the plain pass on every image',
  );
  for (const r of aug)
    for (const b of r.boxes)
      assert.ok(b.x1 >= 0 && b.x2 <= 256 && b.y1 >= 0 && b.y2 <= 256 && b.x1 < b.x2);
});

test('val --augment gives metrics different from the plain ones; the loss is refused', async () => {
  const lines: string[] = [];
  const r = await val({
    model: await goldenModel(),
    data: fixture('shapes5', 'data.yaml'),
    imgsz: 256,
    augment: true,
    log: (l) => lines.push(l),
  });
  assert.equal(r.images, 64);
  assert.equal(r.instances, 237);
  for (const v of Object.values(r.metrics)) assert.ok(v > 0 && v < 1);
  assert.notEqual(r.metrics.mAP50_95.toFixed(4), gv['mAP50-95'].toFixed(4));
  assert.match(lines.join('\n'), /\s+all\s+64\s+237\s/);
  await assert.rejects(
    val({
      model: await goldenModel(),
      data: fixture('shapes5', 'data.yaml'),
      imgsz: 256,
      augment: true,
      loss: {
        box: 0.05,
        cls: 0.5,
        obj: 1,
        cls_pw: 1,
        obj_pw: 1,
        anchor_t: 4,
        fl_gamma: 0,
        label_smoothing: 0,
      },
    }),
    (e: unknown) => e instanceof Yolo5Error && /loss or augment, not both/.test(e.message),
  );
});

test(
  'an ensemble of the same weights twice detects exactly what one model does',
  {
    timeout: 120_000,
  },
  async () => {
    const model = await goldenModel();
    const twin = await model.clone();
    const files = ['00000.jpg', '00001.jpg', '00002.jpg'].map(image);
    const one = await detect(files, { model, imgsz: 256, conf: 0.01 });
    assert.ok(one.every((r) => r.boxes.length > 0));
    // Two handles on one model as well: its lock is taken once, not twice.
    for (const e of [new Ensemble([model, twin]), new Ensemble([model, model])]) {
      const both = await detect(files, { model: e, imgsz: 256, conf: 0.01 });
      one.forEach((r, i) => assert.deepEqual(sortBoxes(both[i]!.boxes), sortBoxes(r.boxes)));
    }
    // With augment too: each member runs its passes, one NMS over all of them.
    const aug = await detect(files, { model, imgsz: 256, conf: 0.01, augment: true });
    const augTwice = await detect(files, {
      model: new Ensemble([model, twin]),
      imgsz: 256,
      conf: 0.01,
      augment: true,
    });
    aug.forEach((r, i) => assert.deepEqual(sortBoxes(augTwice[i]!.boxes), sortBoxes(r.boxes)));
  },
);

test('an ensemble of two different models differs from either; strides: the largest', async () => {
  const model = await goldenModel();
  const other = await perturbed();
  const files = ['00000.jpg', '00001.jpg'].map(image);
  const a = await detect(files, { model, imgsz: 256, conf: 0.05 });
  const b = await detect(files, { model: other, imgsz: 256, conf: 0.05 });
  const ab = await detect(files, { model: new Ensemble([model, other]), imgsz: 256, conf: 0.05 });
  const key = (bs: Box[]) => JSON.stringify(sortBoxes(bs));
  assert.ok(ab.some((r, i) => key(r.boxes) !== key(a[i]!.boxes)));
  assert.ok(ab.some((r, i) => key(r.boxes) !== key(b[i]!.boxes)));
  // Every ensemble box is one of the members' candidates (one NMS over both candidate sets).
  const e2 = new Ensemble([model, other]);
  const nms = { ...everything, conf: 0.05, iou: 0.45 };
  const joint = await e2.predict(files, nms);
  for (const [i, r] of joint.results.entries()) {
    const pool = new Set<string>();
    for (const m of [model, other])
      for (const row of rows((await m.predict([files[i]!], everything)).results[0]!.detections))
        pool.add(JSON.stringify(row));
    const got = rows(r.detections);
    assert.equal(got.length, ab[i]!.boxes.length);
    for (const row of got) assert.ok(pool.has(JSON.stringify(row)), `${files[i]}: ${row}`);
  }

  // A P6 member (stride 64): a 256×200 image is padded to 256×256, not 256×224, or the P6
  // model's head could not join its levels.
  const p6 = await loadModel({ cfg: 'yolov5n6', nc: 5 });
  const e = new Ensemble([model, p6]);
  assert.equal(e.stride, 64);
  const [r] = await detect(
    { data: new Uint8Array(256 * 200 * 3).fill(90), width: 256, height: 200 },
    { model: e, imgsz: 256, conf: 0.001, augment: true },
  );
  assert.equal(r!.error, undefined);
  assert.equal(r!.height, 200);
});

test('ensemble members must agree on classes: the error names both files and classes', async () => {
  const gm = await goldenModel();
  const nc3 = path.join(dir, 'nc3.pt');
  await (await loadModel({ cfg: g.yaml as never, nc: 3 })).save(nc3);
  await assert.rejects(
    loadModel({ weights: [checkpoint, nc3] }),
    (e: unknown) =>
      e instanceof Yolo5Error &&
      e.code === 'E_ENSEMBLE' &&
      e.message.includes(`${checkpoint} has 5 classes (ellipse, rect, triangle, cross, ring)`) &&
      e.message.includes(`${nc3} has 3 classes`),
  );
  // Same count, other names.
  const renamed = path.join(dir, 'renamed.pt');
  await (
    await loadModel({ cfg: g.yaml as never, nc: 5, names: ['a', 'b', 'c', 'd', 'e'] })
  ).save(renamed);
  await assert.rejects(
    loadModel({ weights: [checkpoint, renamed] }),
    (e: unknown) =>
      e instanceof Yolo5Error &&
      e.code === 'E_ENSEMBLE' &&
      e.message.includes(`${renamed} has 5 classes (a, b, c, d, e)`),
  );
  // Index names ("0"…"4") are unknown names and agree with any.
  const unnamed = await loadModel({ cfg: g.yaml as never, nc: 5 });
  assert.deepEqual(new Ensemble([unnamed, gm]).names, gm.names);
  assert.throws(() => new Ensemble([]), /at least one model/);
  await assert.rejects(loadModel({ weights: [] }), /one or more weights files/);
});

test('yolo5 detect and val CLIs: several --weights and --augment', async () => {
  const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
  const second = path.join(dir, 'second.pt');
  // A copy of the checkpoint under another name: an ensemble of two files.
  fs.copyFileSync(checkpoint, second);
  const d = spawnSync(
    process.execPath,
    [
      cli,
      'detect',
      '--weights',
      checkpoint,
      second,
      '--augment',
      '--source',
      image('00000.jpg'),
      image('00001.jpg'),
      '--img',
      '256',
      '--nosave',
      '--project',
      dir,
      '--name',
      'd',
    ],
    { encoding: 'utf8', cwd: packageRoot() },
  );
  assert.equal(d.status, 0, d.stderr);
  assert.match(d.stdout, /Ensemble created with .*yolov5n-shapes5\.pt, .*second\.pt/);
  const res = JSON.parse(fs.readFileSync(path.join(dir, 'd', 'results.json'), 'utf8')) as {
    results: { boxes: unknown[] }[];
  };
  assert.equal(res.results.length, 2);

  // val on four images of the fixture set, through a .txt list.
  const list = path.join(dir, 'four.txt');
  fs.writeFileSync(
    list,
    ['00000', '00001', '00002', '00003'].map((s) => image(`${s}.jpg`)).join('\n'),
  );
  const yaml = path.join(dir, 'four.yaml');
  fs.writeFileSync(yaml, `val: ${list}\nnc: 5\nnames: [ellipse, rect, triangle, cross, ring]\n`);
  const v = spawnSync(
    process.execPath,
    [
      cli,
      'val',
      '--weights',
      checkpoint,
      second,
      '--augment',
      '--data',
      yaml,
      '--img',
      '256',
      '--project',
      dir,
      '--name',
      'v',
    ],
    { encoding: 'utf8', cwd: packageRoot() },
  );
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, /Ensemble created with/);
  assert.match(v.stdout, /\s+all\s+4\s+\d+\s/);

  // Mismatched classes: a clear error, exit code 1.
  const nc3 = path.join(dir, 'cli-nc3.pt');
  await (await loadModel({ cfg: g.yaml as never, nc: 3 })).save(nc3);
  const bad = spawnSync(
    process.execPath,
    [cli, 'detect', '--weights', checkpoint, nc3, '--source', image('00000.jpg')],
    { encoding: 'utf8', cwd: dir },
  );
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /Ensemble models must agree on their classes/);
  assert.equal(fs.existsSync(path.join(dir, 'runs')), false);
});

/**
 * The run folder's reports without training: TensorBoard records, CRC32C, opt.yaml in the
 * reference's keys, the progress printer, and each plot decoding as a non-blank image.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32c, maskedCrc32c } from '../lib/report/crc32c';
import { EventWriter, FILE_VERSION, readEvents, tfRecord } from '../lib/report/tensorboard';
import {
  freezeFromReference,
  freezeToReference,
  optionsFromSaved,
  toReferenceOpt,
} from '../lib/report/opt';
import { ProgressPrinter } from '../lib/report/progress';
import {
  plotConfusionMatrix,
  plotCorrelogram,
  plotCurves,
  plotEvolve,
  plotLabels,
  plotResults,
} from '../lib/report/plots';
import { writeMosaic } from '../lib/report/mosaic';
import { FONT, skia } from '../lib/report/canvas';
import { SCALAR_TAGS } from '../lib/report/run-plots';
import { niceTicks } from '../lib/report/chart';
import { formatG } from '../lib/predict/labels';
import { fixture, tempDir } from './helpers';

test('CRC-32C matches the standard check value and TFRecord masks it', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 zero bytes
  const crc = crc32c(Buffer.from('abc'));
  assert.equal(maskedCrc32c(Buffer.from('abc')), (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0);
});

test('TensorBoard: version record, then every tag and value per epoch; CRCs are checked', () => {
  const dir = tempDir();
  const w = new EventWriter(dir, 1_700_000_000_000);
  assert.match(path.basename(w.file), /^events\.out\.tfevents\.1700000000\.[^.]+.*\.\d+$/);
  const epochs = [0, 1, 2];
  for (const e of epochs)
    w.scalars(e, Object.fromEntries(SCALAR_TAGS.map((t, i) => [t, e + i / 100])));
  w.image(2, 'results', { width: 2, height: 1, encoded: Uint8Array.from([1, 2, 3]) });
  w.close();
  const events = readEvents(w.file);
  assert.equal(events.length, 1 + epochs.length + 1);
  assert.equal(events[0]!.fileVersion, FILE_VERSION);
  assert.equal(events[0]!.wallTime, 1_700_000_000);
  for (const e of epochs) {
    const ev = events[1 + e]!;
    assert.equal(ev.step, e);
    assert.deepEqual(
      ev.values.map((v) => v.tag),
      SCALAR_TAGS,
    );
    ev.values.forEach((v, i) => assert.equal(v.simpleValue, Math.fround(e + i / 100)));
  }
  const image = events[4]!.values[0]!.image!;
  assert.deepEqual([image.width, image.height, [...image.encoded]], [2, 1, [1, 2, 3]]);
  // One flipped byte in a record's data, then in a length: both are reported.
  const bytes = fs.readFileSync(w.file);
  const flipped = Buffer.from(bytes);
  flipped[bytes.length - 6]! ^= 1;
  fs.writeFileSync(w.file, flipped);
  assert.throws(() => readEvents(w.file), /data CRC does not match/);
  const rec = tfRecord(Buffer.from('x'));
  rec[0] = 2;
  fs.writeFileSync(w.file, rec);
  assert.throws(() => readEvents(w.file), /length CRC does not match/);
  fs.rmSync(dir, { recursive: true });
});

const SPEC_KEYS =
  'weights cfg data hyp epochs batch_size imgsz rect resume nosave noval noautoanchor noplots evolve bucket cache image_weights device multi_scale single_cls optimizer sync_bn workers project name exist_ok quad cos_lr label_smoothing patience freeze save_period seed local_rank entity upload_dataset bbox_interval artifact_alias save_dir'.split(
    ' ',
  );

test("opt.yaml: the reference's keys in its order, yolo5's own after them; read back to the same options", () => {
  const opts = {
    data: '/d/data.yaml',
    cfg: 'yolov5n.yaml',
    epochs: 3,
    batch: 8,
    imgsz: 128,
    multiScale: true,
    cosLr: true,
    labelSmoothing: 0.1,
    imageWeights: false,
    singleCls: false,
    existOk: true,
    cache: true,
    device: 'cpu',
    freeze: 10,
    freezeBn: true,
    closeMosaic: 2,
    channelsLast: true,
    workers: 2,
    seed: 1,
    optimizer: 'AdamW',
    noplots: true,
  };
  const ref = toReferenceOpt(opts, { hyp: { lr0: 0.01 }, saveDir: '/runs/train/exp' });
  assert.deepEqual(Object.keys(ref).slice(0, SPEC_KEYS.length), SPEC_KEYS);
  assert.deepEqual(Object.keys(ref).slice(SPEC_KEYS.length), [
    'freeze_bn',
    'close_mosaic',
    'channels_last',
  ]);
  assert.equal(ref['batch_size'], 8);
  assert.equal(ref['multi_scale'], true);
  assert.equal(ref['cos_lr'], true);
  assert.deepEqual(ref['freeze'], [10]);
  assert.deepEqual(ref['hyp'], { lr0: 0.01 });
  assert.equal(ref['save_dir'], '/runs/train/exp');
  assert.equal(ref['cache'], 'ram');
  assert.equal(ref['weights'], '');
  const back = optionsFromSaved(ref);
  for (const [k, v] of Object.entries(opts)) assert.deepEqual(back[k], v, k);
  // Keys the options did not set come back as the reference's defaults (the same as yolo5's).
  assert.deepEqual(
    { rect: back['rect'], nosave: back['nosave'], patience: back['patience'] },
    { rect: false, nosave: false, patience: 100 },
  );
  // What yolo5 saved before (camelCase) is taken as it is.
  assert.deepEqual(optionsFromSaved({ batch: 4, cosLr: true, resume: 'x' }), {
    batch: 4,
    cosLr: true,
  });
  // The reference's own opt (the fixture checkpoint's) reads as options.
  const fixtureOpt = { weights: '', batch_size: 16, freeze: [0], device: '0', cache: null };
  assert.deepEqual(optionsFromSaved(fixtureOpt), { batch: 16, device: 0, cache: false });
});

test('--freeze in the reference list form: a count, several layers, one layer, prefixes', () => {
  for (const [spec, list] of [
    [undefined, [0]],
    [10, [10]],
    [
      [0, 1, 2],
      [0, 1, 2],
    ],
    [[3], [3, 3]],
    ['model.24.', ['model.24.']],
    [
      ['model.24.', 'model.1*'],
      ['model.24.', 'model.1*'],
    ],
  ] as const) {
    assert.deepEqual(freezeToReference(spec), list);
    assert.deepEqual(freezeFromReference(list), spec);
  }
});

test("Python's %g for label rows", () => {
  assert.equal(formatG(0.5664062), '0.566406');
  assert.equal(formatG(1), '1');
  assert.equal(formatG(0.00001234), '1.234e-05');
  assert.equal(formatG(0.25496500730514526), '0.254965');
  // Ties on the exact binary value go to even, as printf rounds (toPrecision would give 0.257813).
  assert.equal(formatG(0.2578125), '0.257812');
  assert.equal(formatG(0.2578135), '0.257813'); // just below the tie in binary (Python agrees)
  assert.equal(formatG(9.9999996), '10');
  assert.equal(formatG(-0.5), '-0.5');
});

test('progress in a pipe: a line at the end of a pass and at most every 10 s during it', () => {
  const lines: string[] = [];
  const p = new ProgressPrinter((s) => lines.push(s), false, 10_000);
  p.update('a', false, 1000); // starts the clock
  p.update('b', false, 5000);
  p.update('c', false, 11_000);
  p.update('d', false, 12_000);
  p.update('e', true, 13_000);
  assert.deepEqual(lines, ['c\n', 'e\n']);
  const tty: string[] = [];
  const t = new ProgressPrinter((s) => tty.push(s), true);
  t.update('x', false);
  t.update('y', true);
  assert.deepEqual(tty, ['\rx\u001b[K', '\ry\u001b[K\n']);
});

/** Decodes an image file and returns its size and the spread of its pixel values. */
async function imageStats(file: string): Promise<{ width: number; height: number; std: number }> {
  const { loadImage, createCanvas } = skia();
  const img = await loadImage(file);
  const c = createCanvas(img.width, img.height);
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, img.width, img.height).data;
  let s = 0;
  let s2 = 0;
  const n = d.length / 4;
  for (let i = 0; i < d.length; i += 4) {
    const v = (d[i]! + d[i + 1]! + d[i + 2]!) / 3;
    s += v;
    s2 += v * v;
  }
  return { width: img.width, height: img.height, std: Math.sqrt(s2 / n - (s / n) ** 2) };
}

async function assertImage(file: string, minSide = 300): Promise<void> {
  assert.ok(fs.existsSync(file), `${file} missing`);
  const st = await imageStats(file);
  assert.ok(Math.min(st.width, st.height) >= minSide, `${file}: ${st.width}x${st.height}`);
  assert.ok(st.std > 5, `${file} is blank (pixel std ${st.std.toFixed(2)})`);
}

test('the plot font is registered from the npm package and renders text', () => {
  const { GlobalFonts, createCanvas } = skia();
  assert.ok(GlobalFonts.has(FONT));
  const c = createCanvas(200, 40);
  const ctx = c.getContext('2d');
  ctx.font = `24px ${FONT}`;
  ctx.fillText('mAP 0.5', 4, 30);
  const d = ctx.getImageData(0, 0, 200, 40).data;
  let inked = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]! > 128) inked++;
  assert.ok(inked > 100, `only ${inked} pixels of text`);
});

test('results.png, curves, confusion matrix, labels, correlogram, mosaics and evolve.png decode as non-blank images', async () => {
  const dir = tempDir();
  const csv = path.join(dir, 'results.csv');
  const header = ['epoch', ...SCALAR_TAGS];
  const rows = Array.from({ length: 12 }, (_, e) =>
    [e, ...SCALAR_TAGS.map((_, i) => Math.exp(-e / 5) * (i + 1) + 0.01 * Math.sin(e * i))].join(
      ',',
    ),
  );
  fs.writeFileSync(csv, `${header.join(',')}\n${rows.join('\n')}\n`);
  await plotResults(csv, path.join(dir, 'results.png'));
  await assertImage(path.join(dir, 'results.png'), 1000);

  const px = Float64Array.from({ length: 1000 }, (_, i) => i / 999);
  const nc = 3;
  const rowsOf = (f: (x: number, c: number) => number) =>
    Float64Array.from({ length: nc * 1000 }, (_, k) => f(px[k % 1000]!, Math.floor(k / 1000)));
  const p = rowsOf((x, c) => Math.min(1, 0.3 + x * (0.5 + c * 0.1)));
  const r = rowsOf((x, c) => Math.max(0, 1 - x * (1 + c * 0.3)));
  const f1 = Float64Array.from(p, (v, k) => (2 * v * r[k]!) / (v + r[k]! + 1e-16));
  const mean = (a: Float64Array) =>
    Float64Array.from(px, (_, j) => (a[j]! + a[1000 + j]! + a[2000 + j]!) / 3);
  const curves = {
    px,
    precision: mean(p),
    recall: mean(r),
    f1: mean(f1),
    classPrecision: p,
    classRecall: r,
    classF1: f1,
    prPrecision: [
      Float64Array.from(px, (x) => 1 - x * x),
      null,
      Float64Array.from(px, (x) => 1 - x),
    ],
    bestIndex: 400,
  };
  const classes = ['ellipse', 'rect', 'triangle'].map((name, i) => ({ name, ap50: 0.3 + i / 10 }));
  const files = await plotCurves(dir, curves, classes);
  assert.deepEqual(
    files.map((f) => path.basename(f)),
    ['PR_curve.png', 'F1_curve.png', 'P_curve.png', 'R_curve.png'],
  );
  for (const f of files) await assertImage(f, 800);

  const cm = [
    [10, 1, 0, 3],
    [2, 8, 1, 1],
    [0, 0, 5, 2],
    [1, 2, 3, 0],
  ];
  await plotConfusionMatrix(path.join(dir, 'confusion_matrix.png'), cm, [
    'ellipse',
    'rect',
    'triangle',
  ]);
  await assertImage(path.join(dir, 'confusion_matrix.png'));

  const labels = Array.from({ length: 200 }, (_, i) => [
    i % 3,
    ((i * 37) % 100) / 100,
    ((i * 53) % 100) / 100,
    0.05 + ((i * 7) % 30) / 100,
    0.05 + ((i * 11) % 30) / 100,
  ]);
  await plotLabels(path.join(dir, 'labels.jpg'), labels, ['ellipse', 'rect', 'triangle']);
  await assertImage(path.join(dir, 'labels.jpg'), 1000);
  await plotCorrelogram(path.join(dir, 'labels_correlogram.jpg'), labels);
  await assertImage(path.join(dir, 'labels_correlogram.jpg'), 1000);

  const img = fixture('shapes5', 'images', 'val', '00000.jpg');
  const tiles = Array.from({ length: 5 }, () => ({
    image: img,
    boxes: [[1, 0.5, 0.5, 0.4, 0.3, 0.9]],
    caption: '00000.jpg',
  }));
  await writeMosaic(path.join(dir, 'val_batch0_pred.jpg'), tiles, { names: ['a', 'b'] });
  await assertImage(path.join(dir, 'val_batch0_pred.jpg'), 500);

  const evolveCsv = path.join(dir, 'evolve.csv');
  const cols = ['P', 'R', 'mAP50', 'mAP50-95', 'vb', 'vo', 'vc', 'lr0', 'momentum'];
  const gen = Array.from({ length: 6 }, (_, g) =>
    [0.1, 0.2, 0.05 + g / 100, 0.02 + g / 200, 0.1, 0.1, 0.1, 0.01 + g / 1000, 0.9 - g / 100].join(
      ',',
    ),
  );
  fs.writeFileSync(evolveCsv, `${cols.join(',')}\n${gen.join('\n')}\n`);
  await plotEvolve(evolveCsv, path.join(dir, 'evolve.png'), 7);
  await assertImage(path.join(dir, 'evolve.png'), 300);
  fs.rmSync(dir, { recursive: true });
});

test('chart ticks: nice steps, and a range within float rounding ends instead of looping', () => {
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1]);
  assert.deepEqual(niceTicks(-3, 7, 5), [-2, 0, 2, 4, 6]);
  // results.csv columns that are equal up to rounding (a learning rate, a flat metric).
  const t = niceTicks(0.081111, 0.08111100000000002);
  assert.ok(t.length >= 1 && t.length <= 1000, `${t.length} ticks`);
  assert.ok(t.every(Number.isFinite));
});

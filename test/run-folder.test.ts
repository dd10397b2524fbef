/**
 * A short training's run folder holds what the reference's does: plots and mosaics that decode as
 * non-blank images, a TensorBoard file whose records and tags check out, opt.yaml with the
 * reference's keys; --noplots leaves only TensorBoard.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { train } from '../lib';
import { skia } from '../lib/report/canvas';
import { readEvents, FILE_VERSION } from '../lib/report/tensorboard';
import { SCALAR_TAGS } from '../lib/report/run-plots';
import { fixture, tempDir } from './helpers';

const IMAGES = [
  'results.png',
  'confusion_matrix.png',
  'F1_curve.png',
  'P_curve.png',
  'R_curve.png',
  'PR_curve.png',
  'labels.jpg',
  'labels_correlogram.jpg',
  'train_batch0.jpg',
  'train_batch1.jpg',
  'train_batch2.jpg',
  'val_batch0_labels.jpg',
  'val_batch0_pred.jpg',
  'val_batch1_labels.jpg',
  'val_batch1_pred.jpg',
];

async function pixelStd(file: string): Promise<{ w: number; h: number; std: number }> {
  const { loadImage, createCanvas } = skia();
  const img = await loadImage(file);
  const c = createCanvas(img.width, img.height);
  c.getContext('2d').drawImage(img, 0, 0);
  const d = c.getContext('2d').getImageData(0, 0, img.width, img.height).data;
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < d.length; i += 4) {
    s += d[i]!;
    s2 += d[i]! * d[i]!;
  }
  const n = d.length / 4;
  return { w: img.width, h: img.height, std: Math.sqrt(s2 / n - (s / n) ** 2) };
}

test('train writes the reference run folder: plots, mosaics, TensorBoard, opt.yaml', async () => {
  const dir = tempDir();
  const lines: string[] = [];
  const r = await train({
    data: fixture('shapes5', 'data.yaml'),
    weights: fixture('yolov5n-shapes5.pt'),
    imgsz: 64,
    batch: 16,
    epochs: 2,
    workers: 1,
    project: dir,
    name: 'run',
    noautoanchor: true,
    log: (l) => lines.push(l),
  });
  assert.equal(r.status, 'completed');
  for (const f of IMAGES) {
    const file = path.join(r.saveDir, f);
    assert.ok(fs.existsSync(file), `${f} missing`);
    const st = await pixelStd(file);
    assert.ok(Math.min(st.w, st.h) >= 128, `${f}: ${st.w}x${st.h}`);
    assert.ok(st.std > 5, `${f} looks blank (std ${st.std.toFixed(1)})`);
  }
  const events = fs.readdirSync(r.saveDir).filter((f) => f.startsWith('events.out.tfevents.'));
  assert.equal(events.length, 1);
  const records = readEvents(path.join(r.saveDir, events[0]!));
  assert.equal(records[0]!.fileVersion, FILE_VERSION);
  const csv = fs.readFileSync(path.join(r.saveDir, 'results.csv'), 'utf8').trim().split('\n');
  const scalars = records.slice(1);
  assert.deepEqual(
    scalars.map((e) => e.step),
    [0, 1],
  );
  scalars.forEach((e, k) => {
    assert.deepEqual(
      e.values.map((v) => v.tag),
      SCALAR_TAGS,
    );
    const row = csv[k + 1]!.split(',').slice(1).map(Number);
    // The csv holds 5 significant digits of the same numbers.
    e.values.forEach((v, i) =>
      assert.ok(
        Math.abs(v.simpleValue! - row[i]!) <= Math.abs(row[i]!) * 1e-4 + 1e-9,
        `${v.tag}: ${v.simpleValue} vs ${row[i]}`,
      ),
    );
  });
  const opt = yaml.load(fs.readFileSync(path.join(r.saveDir, 'opt.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  for (const k of ['batch_size', 'multi_scale', 'cos_lr', 'save_dir', 'freeze', 'hyp', 'cfg'])
    assert.ok(k in opt, `opt.yaml lacks ${k}`);
  assert.equal(opt['batch_size'], 16);
  assert.equal(opt['save_dir'], r.saveDir);
  assert.equal((opt['hyp'] as Record<string, number>)['lr0'], 0.01);
  assert.ok(!('batch' in opt) && !('cosLr' in opt));
  assert.ok(lines.some((l) => /^Plots: \d+\.\d+s/.test(l)));

  // --noplots: TensorBoard only.
  const q = await train({
    data: fixture('shapes5', 'data.yaml'),
    weights: fixture('yolov5n-shapes5.pt'),
    imgsz: 64,
    batch: 32,
    epochs: 1,
    workers: 1,
    project: dir,
    name: 'quiet',
    noautoanchor: true,
    noplots: true,
  });
  const files = fs.readdirSync(q.saveDir);
  assert.ok(files.some((f) => f.startsWith('events.out.tfevents.')));
  assert.deepEqual(
    files.filter((f) => /\.(png|jpg)$/.test(f)),
    [],
  );
  fs.rmSync(dir, { recursive: true });
});

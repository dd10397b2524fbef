/**
 * detect's streaming and label files: `--save-txt` rows equal the reference's detect.py rows
 * (boxes rounded to whole pixels first), `detectStream` yields what `detectImages` returns, one
 * image at a time, and the CLI prints the reference's per-image line as each image finishes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { detectImages, detectStream } from '../lib/predict/detect';
import { formatG, yoloTxtRows } from '../lib/predict/labels';
import { fixture, golden, goldenModel, runCli, tempDir } from './helpers';

interface GoldenDetect {
  imgsz: number;
  conf: number;
  iou: number;
  max_det: number;
  results: Record<string, number[][]>;
}

const images = (name: string) => fixture('shapes5', 'images', 'val', name);

test("--save-txt rows are the reference's: whole-pixel boxes, normalised, %g", async () => {
  const model = await goldenModel();
  let rows = 0;
  for (const c of golden().detect as GoldenDetect[]) {
    const files = Object.keys(c.results);
    const { results } = await detectImages(files.map(images), {
      model,
      imgsz: c.imgsz,
      conf: c.conf,
      iou: c.iou,
      maxDet: c.max_det,
    });
    files.forEach((f, i) => {
      const ours = yoloTxtRows(results[i]!, true).map((l) => l.split(' '));
      const ref = c.results[f]!;
      assert.equal(ours.length, ref.length, f);
      ref.forEach((r, k) => {
        assert.deepEqual(ours[k]!.slice(0, 5), r.slice(0, 5).map(formatG), `${f} row ${k}`);
        assert.ok(Math.abs(Number(ours[k]![5]) - r[5]!) <= 1e-3, `${f} row ${k} conf`);
        rows++;
      });
    });
  }
  assert.ok(rows > 10, `only ${rows} rows compared`);
});

test('detectStream yields each image as it finishes, equal to detectImages', async () => {
  const model = await goldenModel();
  const files = ['00000.jpg', '00001.jpg', '00002.jpg'].map(images);
  const all = await detectImages(files, { model, imgsz: 256, conf: 0.05 });
  const stream = await detectStream(files, { model, imgsz: 256, conf: 0.05 });
  assert.equal(stream.total, 3);
  const seen: number[] = [];
  for await (const r of stream) {
    seen.push(r.index);
    const { index, total, speed, ...result } = r;
    assert.equal(total, 3);
    assert.ok(speed.inference > 0);
    assert.deepEqual(result, all.results[index]);
  }
  assert.deepEqual(seen, [0, 1, 2]);
});

test('yolo5 detect prints "image i/N path: WxH …, ms" per image and writes results.json', () => {
  const dir = tempDir();
  const g = golden();
  const cfg = path.join(dir, 'm.yaml');
  fs.writeFileSync(cfg, JSON.stringify(g.yaml));
  const r = runCli(
    'detect',
    '--weights',
    fixture('yolov5n-shapes5.pt'),
    '--source',
    images('00000.jpg'),
    images('00001.jpg'),
    '--img',
    '256',
    '--conf',
    '0.05',
    '--save-txt',
    '--project',
    dir,
    '--name',
    'run',
  );
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('image '));
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^image 1\/2 .*00000\.jpg: 256x256 (\d+ \w+, )+\d+\.\dms$/);
  assert.match(lines[1]!, /^image 2\/2 .*00001\.jpg: 256x256 /);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'run', 'results.json'), 'utf8')) as {
    results: { source: string; boxes: unknown[] }[];
    speed: { inference: number };
  };
  assert.equal(json.results.length, 2);
  assert.ok(json.speed.inference > 0);
  const txt = fs.readFileSync(path.join(dir, 'run', 'labels', '00000.txt'), 'utf8').trim();
  assert.equal(txt.split('\n').length, json.results[0]!.boxes.length);
  fs.rmSync(dir, { recursive: true });
});

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { detect } from '../lib';
import { detectImages } from '../lib/predict/detect';
import { native } from '../lib/native/addon';
import { packageRoot } from '../lib/native/paths';
import { fixture, golden, goldenModel, tempDir } from './helpers';

interface GoldenDetect {
  imgsz: number;
  conf: number;
  iou: number;
  max_det: number;
  results: Record<string, number[][]>;
}

const g = golden();
const images = (name: string) => fixture('shapes5', 'images', 'val', name);

describe('detect parity with the reference (golden detections)', () => {
  for (const c of g.detect as GoldenDetect[]) {
    test(`conf ${c.conf}, iou ${c.iou}, img ${c.imgsz}`, async () => {
      assert.ok(
        native().jpegLibrary() !== '',
        'TurboJPEG must be loaded for OpenCV-identical pixels',
      );
      const model = await goldenModel();
      const files = Object.keys(c.results);
      const results = await detect(
        files.map((f) => images(f)),
        { model, imgsz: c.imgsz, conf: c.conf, iou: c.iou, maxDet: c.max_det },
      );
      files.forEach((f, i) => {
        const r = results[i]!;
        // The reference writes its rows lowest confidence first.
        const ref = [...c.results[f]!].reverse();
        assert.equal(
          r.boxes.length,
          ref.length,
          `${f}: ${r.boxes.length} boxes, reference ${ref.length}`,
        );
        ref.forEach(([cls, cx, cy, w, h, conf], k) => {
          const b = r.boxes[k]!;
          assert.equal(b.class, cls, `${f} box ${k} class`);
          assert.equal(b.name, g.names[String(cls)]);
          // The reference rounds boxes to whole pixels before saving them normalised to 6
          // decimals: 0.5 px of rounding plus under 1e-3 px of normalisation.
          const corners = [cx! - w! / 2, cy! - h! / 2, cx! + w! / 2, cy! + h! / 2].map(
            (v, j) => v * (j % 2 === 0 ? r.width : r.height),
          );
          [b.x1, b.y1, b.x2, b.y2].forEach((v, j) => {
            assert.ok(
              Math.abs(v - corners[j]!) <= 0.5 + 1e-3,
              `${f} box ${k} coord ${j}: ${v} vs ${corners[j]}`,
            );
          });
          assert.ok(
            Math.abs(b.confidence - conf!) <= 1e-3,
            `${f} box ${k} conf ${b.confidence} vs ${conf}`,
          );
        });
      });
    });
  }
});

test('detect takes encoded buffers and raw RGB and agrees with the file path', async () => {
  const model = await goldenModel();
  const file = images('00000.jpg');
  const [fromPath] = await detect(file, { model, imgsz: 256, conf: 0.05 });
  const [fromBuffer] = await detect(fs.readFileSync(file), { model, imgsz: 256, conf: 0.05 });
  assert.deepEqual(fromBuffer!.boxes, fromPath!.boxes);
  assert.equal(fromBuffer!.source, 'buffer');
  // Raw pixels: decode through the BMP encoder (lossless) to get the RGB bytes.
  const bmp = (await native().drawDetections(file, [], { format: 'bmp' }))!;
  const off = bmp[10]! | (bmp[11]! << 8);
  const w = 256;
  const h = 256;
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++)
        rgb[(y * w + x) * 3 + c] = bmp[off + ((h - 1 - y) * w + x) * 3 + (2 - c)]!;
  const [fromRaw] = await detect(
    { data: rgb, width: w, height: h },
    { model, imgsz: 256, conf: 0.05 },
  );
  assert.deepEqual(fromRaw!.boxes, fromPath!.boxes);
});

test('letterbox maps boxes back: a non-square, non-multiple image', async () => {
  const model = await goldenModel();
  const dir = tempDir();
  // 200x300 (w x h) raw image of grey; any boxes must lie inside the source image.
  const rgb = new Uint8Array(200 * 300 * 3).fill(128);
  const [r] = await detect(
    { data: rgb, width: 200, height: 300 },
    { model, imgsz: 256, conf: 0.001 },
  );
  assert.equal(r!.width, 200);
  assert.equal(r!.height, 300);
  for (const b of r!.boxes) {
    assert.ok(b.x1 >= 0 && b.x2 <= 200 && b.y1 >= 0 && b.y2 <= 300 && b.x1 <= b.x2 && b.y1 <= b.y2);
  }
  fs.rmSync(dir, { recursive: true });
});

test('classes filter, agnostic NMS and max-det', async () => {
  const model = await goldenModel();
  const file = images('00000.jpg');
  const [all] = await detect(file, { model, imgsz: 256, conf: 0.01 });
  const [only] = await detect(file, { model, imgsz: 256, conf: 0.01, classes: [4] });
  assert.ok(only!.boxes.length > 0 && only!.boxes.every((b) => b.class === 4));
  assert.deepEqual(
    only!.boxes,
    all!.boxes.filter((b) => b.class === 4),
  );
  const [two] = await detect(file, { model, imgsz: 256, conf: 0.01, maxDet: 2 });
  assert.deepEqual(two!.boxes, all!.boxes.slice(0, 2));
  const [agn] = await detect(file, { model, imgsz: 256, conf: 0.01, agnosticNms: true });
  assert.ok(agn!.boxes.length <= all!.boxes.length);
});

test('concurrent detect calls on one model all resolve, and the event loop keeps ticking', async () => {
  const model = await goldenModel();
  const files = ['00000.jpg', '00001.jpg', '00002.jpg', '00003.jpg'].map(images);
  const serial = await Promise.all(files.map((f) => detect(f, { model, imgsz: 256, conf: 0.1 })));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const parallel = await Promise.all(files.map((f) => detect(f, { model, imgsz: 256, conf: 0.1 })));
  clearInterval(timer);
  assert.deepEqual(parallel, serial);
  assert.ok(ticks > 0);
});

test('bad inputs: unreadable image is skipped with a warning; empty or missing source is an error', async () => {
  const model = await goldenModel();
  const dir = tempDir();
  const bad = path.join(dir, 'broken.jpg');
  fs.writeFileSync(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  const warnings: string[] = [];
  const out = await detectImages([bad, images('00000.jpg')], {
    model,
    imgsz: 256,
    log: (l) => warnings.push(l),
  });
  assert.match(out.results[0]!.error!, /broken\.jpg/);
  assert.equal(out.results[0]!.boxes.length, 0);
  assert.ok(out.results[1]!.boxes.length > 0);
  assert.ok(warnings.some((w) => w.includes('broken.jpg')));
  await assert.rejects(detect(path.join(dir, 'nope.jpg'), { model }), { code: 'E_FILE' });
  fs.mkdirSync(path.join(dir, 'empty'));
  await assert.rejects(detect(path.join(dir, 'empty'), { model }), {
    code: 'E_ARG',
    message: /No images found/,
  });
  await assert.rejects(detect([], { model }), { code: 'E_ARG' });
  await assert.rejects(detect(images('00000.jpg'), { model, conf: 2 }), {
    message: 'Expected number between 0 and 1 for conf but received 2',
  });
  await assert.rejects(detect({ data: new Uint8Array(5), width: 2, height: 2 }, { model }), {
    code: 'E_ARG',
  });
});

test('yolo5 detect CLI writes annotated images, labels, crops and a JSON summary', () => {
  const dir = tempDir();
  const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
  const cfg = path.join(dir, 'model.yaml');
  fs.writeFileSync(cfg, JSON.stringify(g.yaml));
  const r = spawnSync(
    process.execPath,
    [
      cli,
      'detect',
      '--weights',
      fixture('yolov5n-shapes5.state_dict.pt'),
      '--cfg',
      cfg,
      '--source',
      images('0000[0-3].jpg'),
      '--img',
      '256',
      '--conf',
      '0.2',
      '--save-txt',
      '--save-conf',
      '--save-crop',
      '--project',
      dir,
      '--name',
      'run',
    ],
    { encoding: 'utf8', cwd: packageRoot() },
  );
  assert.equal(r.status, 0, r.stderr);
  const run = path.join(dir, 'run');
  assert.match(r.stdout, /00000\.jpg: 256x256 /);
  assert.match(
    r.stdout,
    new RegExp(`Results saved to ${run.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
  );
  for (const f of ['00000.jpg', '00001.jpg', '00002.jpg', '00003.jpg', 'results.json']) {
    assert.ok(fs.existsSync(path.join(run, f)), f);
  }
  const summary = JSON.parse(fs.readFileSync(path.join(run, 'results.json'), 'utf8')) as {
    results: { source: string; boxes: unknown[] }[];
  };
  assert.equal(summary.results.length, 4);
  const label = fs
    .readFileSync(path.join(run, 'labels', '00000.txt'), 'utf8')
    .trim()
    .split('\n');
  assert.equal(label.length, summary.results[0]!.boxes.length);
  assert.equal(label[0]!.split(' ').length, 6);
  assert.ok(fs.readdirSync(path.join(run, 'crops')).length > 0);
  // The annotated image differs from the source (boxes were drawn) and decodes.
  assert.notDeepEqual(
    fs.readFileSync(path.join(run, '00000.jpg')),
    fs.readFileSync(images('00000.jpg')),
  );
  // --nosave with --save-crop: crops only, no annotated images.
  const r2 = spawnSync(
    process.execPath,
    [cli, 'detect', '--weights', fixture('yolov5n-shapes5.state_dict.pt'), '--cfg', cfg]
      .concat(['--source', images('00000.jpg'), '--img', '256', '--conf', '0.2'])
      .concat(['--nosave', '--save-crop', '--project', dir, '--name', 'run2']),
    { encoding: 'utf8', cwd: packageRoot() },
  );
  assert.equal(r2.status, 0, r2.stderr);
  const run2 = path.join(dir, 'run2');
  assert.ok(!fs.existsSync(path.join(run2, '00000.jpg')));
  const cropFiles = fs
    .readdirSync(path.join(run2, 'crops'), { recursive: true })
    .filter((f) => String(f).endsWith('.jpg'));
  assert.equal(cropFiles.length, summary.results[0]!.boxes.length);
});

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as yolo5 from '../lib';
import { detectImages } from '../lib/predict/detect';
import { native } from '../lib/native/addon';
import { fixture, tempDir } from './helpers';

const checkpoint = fixture('yolov5n-shapes5.pt');
const images = ['00000.jpg', '00001.jpg'].map((f) => fixture('shapes5', 'images', 'val', f));

let shared: Promise<yolo5.HubModel> | undefined;
/** One hub model per file; each test puts back the settings it changes. */
function hub(): Promise<yolo5.HubModel> {
  shared ??= yolo5.load(checkpoint);
  return shared;
}

async function sizeOf(bytes: Uint8Array, ext: string): Promise<{ width: number; height: number }> {
  const dir = tempDir();
  const file = path.join(dir, `x.${ext}`);
  fs.writeFileSync(file, bytes);
  const [info] = await native().imageInfo([file]);
  fs.rmSync(dir, { recursive: true });
  assert.ok(info && 'width' in info, `not decodable: ${JSON.stringify(info)}`);
  return info;
}

test('load gives a callable with the reference defaults; CommonJS require sees load', async () => {
  const model = await hub();
  assert.equal(typeof model, 'function');
  assert.equal(model.conf, 0.25);
  assert.equal(model.iou, 0.45);
  assert.equal(model.classes, null);
  assert.equal(model.maxDet, 1000);
  assert.equal(model.agnostic, false);
  assert.equal(model.multiLabel, false);
  assert.deepEqual(model.names, ['ellipse', 'rect', 'triangle', 'cross', 'ring']);
  assert.equal(model.stride, 32);
  assert.ok(model.model instanceof yolo5.Model);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cjs = require(path.join(__dirname, '..', 'lib', 'index.js')) as typeof yolo5;
  assert.equal(typeof cjs.load, 'function');
});

test('results equal detectImages on the same model; xywh and normalised forms agree', async () => {
  const model = await hub();
  const r = await model(images, { size: 256 });
  const ref = await detectImages(images, { model: model.model, imgsz: 256 });
  assert.equal(r.length, 2);
  assert.deepEqual(r.files, ['00000.jpg', '00001.jpg']);
  assert.deepEqual(r.sizes, [
    { width: 256, height: 256 },
    { width: 256, height: 256 },
  ]);
  assert.ok(r.xyxy.flat().length > 0, 'the fixture images have detections at conf 0.25');
  ref.results.forEach((res, i) => {
    assert.deepEqual(
      r.xyxy[i],
      res.boxes.map((b) => [b.x1, b.y1, b.x2, b.y2, b.confidence, b.class]),
    );
    r.xyxy[i]!.forEach(([x1, y1, x2, y2, c, k], j) => {
      assert.deepEqual(r.xywh[i]![j], [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, c, k]);
      assert.deepEqual(r.xyxyn[i]![j], [x1 / 256, y1 / 256, x2 / 256, y2 / 256, c, k]);
      const [cx, cy, w, h] = r.xywh[i]![j]!;
      assert.deepEqual(r.xywhn[i]![j], [cx / 256, cy / 256, w / 256, h / 256, c, k]);
    });
  });
  // Buffers give the same boxes and reference-style names.
  const fromBuffer = await model(fs.readFileSync(images[0]!), { size: 256 });
  assert.deepEqual(fromBuffer.xyxy[0], r.xyxy[0]);
  assert.deepEqual(fromBuffer.files, ['image0.jpg']);
  assert.match(r.toString(), /^image 1\/2: 256x256 \d+ \w+.*\nimage 2\/2: 256x256 .*\nSpeed: /);
});

test('conf, classes and maxDet settings change later calls', async () => {
  const model = await hub();
  model.conf = 0.05;
  const low = await model(images[0]!, { size: 256 });
  model.conf = 0.9;
  const high = await model(images[0]!, { size: 256 });
  assert.ok(low.xyxy[0]!.length > high.xyxy[0]!.length, 'a higher conf keeps fewer boxes');
  assert.ok(high.xyxy[0]!.every((row) => row[4] > 0.9));
  model.conf = 0.05;
  const cls = low.xyxy[0]![0]![5];
  model.classes = [cls];
  const only = await model(images[0]!, { size: 256 });
  assert.deepEqual(
    only.xyxy[0],
    low.xyxy[0]!.filter((row) => row[5] === cls),
  );
  model.classes = null;
  model.maxDet = 1;
  const one = await model(images, { size: 256 });
  assert.deepEqual(
    one.xyxy.map((x) => x.length),
    [1, 1],
  );
  model.maxDet = 1000;
  model.conf = 0.25;
});

test('toJSON: records like the reference pandas rows, highest confidence first', async () => {
  const model = await hub();
  model.conf = 0.05;
  const r = await model(images, { size: 256 });
  model.conf = 0.25;
  const json = r.toJSON();
  assert.deepEqual(JSON.parse(JSON.stringify(r)), json);
  assert.equal(json.length, 2);
  json.forEach((records, i) => {
    assert.equal(records.length, r.xyxy[i]!.length);
    assert.ok(records.length > 1);
    for (const rec of records) {
      assert.deepEqual(Object.keys(rec), [
        'xmin',
        'ymin',
        'xmax',
        'ymax',
        'confidence',
        'class',
        'name',
      ]);
      assert.equal(rec.name, r.names[rec.class]);
      assert.ok(rec.xmin <= rec.xmax && rec.ymin <= rec.ymax);
    }
    for (let k = 1; k < records.length; k++)
      assert.ok(records[k - 1]!.confidence >= records[k]!.confidence);
  });
});

test('render gives decodable annotated JPEG and PNG of the source size', async () => {
  const model = await hub();
  const r = await model(images, { size: 256 });
  const jpegs = await r.render();
  assert.equal(jpegs.length, 2);
  assert.deepEqual([...jpegs[0]!.subarray(0, 3)], [0xff, 0xd8, 0xff]);
  assert.deepEqual(await sizeOf(jpegs[0]!, 'jpg'), { width: 256, height: 256 });
  const [png] = await r.render({ format: 'png' });
  assert.deepEqual([...png!.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.deepEqual(await sizeOf(png!, 'png'), { width: 256, height: 256 });
  // Boxes were drawn: the PNG differs from a lossless encoding of the bare image.
  const bare = (await native().drawDetections(images[0]!, [], { format: 'png' }))!;
  assert.notDeepEqual(png, bare);
  await assert.rejects(r.render({ format: 'gif' as never }), {
    code: 'E_ARG',
    message: `Expected 'jpeg' or 'png' for format but received "gif"`,
  });
});

test('crop gives one decodable image per detection', async () => {
  const model = await hub();
  model.conf = 0.1;
  const r = await model(images, { size: 256 });
  model.conf = 0.25;
  const crops = await r.crop();
  const total = r.xyxy.reduce((s, x) => s + x.length, 0);
  assert.equal(crops.length, total);
  assert.ok(total > 0);
  for (const c of crops) {
    assert.deepEqual([...c.data.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    assert.deepEqual(await sizeOf(c.data, 'jpg'), { width: c.width, height: c.height });
    assert.ok(Math.abs(c.width - (c.box[2] - c.box[0])) <= 1);
    assert.equal(c.name, r.names[c.class]);
  }
  assert.deepEqual(
    crops.map((c) => [c.image, ...c.box, c.confidence, c.class]),
    r.xyxy.flatMap((rows, i) => rows.map((row) => [i, ...row])),
  );
});

test('bad settings and inputs are refused with the name and value', async () => {
  const model = await hub();
  assert.throws(
    () => {
      model.conf = 2;
    },
    { code: 'E_ARG', message: 'Expected number between 0 and 1 for conf but received 2' },
  );
  assert.throws(
    () => {
      model.classes = [7];
    },
    { code: 'E_ARG', message: /for classes but received \[7\]/ },
  );
  assert.throws(
    () => {
      model.maxDet = 0;
    },
    { code: 'E_ARG' },
  );
  assert.equal(model.conf, 0.25);
  assert.equal(model.classes, null);
  // Test-time augmentation goes through to detect: the same boxes as detectImages with augment.
  const tta = await model(images[0]!, { size: 256, augment: true });
  const direct = await detectImages(images[0]!, {
    model: model.model,
    imgsz: 256,
    augment: true,
    conf: 0.25,
    iou: 0.45,
  });
  assert.deepEqual(
    tta.xyxy[0],
    direct.results[0]!.boxes.map((b) => [b.x1, b.y1, b.x2, b.y2, b.confidence, b.class]),
  );
  await assert.rejects(model(images[0]!, { augment: 'yes' as unknown as boolean }), {
    code: 'E_ARG',
  });
  await assert.rejects(model(images[0]!, { size: 0 }), {
    message: 'Expected integer >= 1 for size but received 0',
  });
  const dir = tempDir();
  const bad = path.join(dir, 'broken.jpg');
  fs.writeFileSync(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  await assert.rejects(model(bad), { code: 'E_FILE', message: /Cannot read image .*broken\.jpg/ });
  fs.rmSync(dir, { recursive: true });
  await assert.rejects(yolo5.load('no-such-weights.pt'), {
    code: 'E_FILE',
    message: /no-such-weights\.pt not found/,
  });
});

test('load takes a bundled model config (untrained weights) and an already loaded Model', async () => {
  const lines: string[] = [];
  const fresh = await yolo5.load('yolov5n.yaml', { nc: 2, log: (l) => lines.push(l) });
  assert.equal(fresh.model.nc, 2);
  assert.ok(lines.some((l) => /untrained/.test(l)));
  const r = await fresh(
    { data: new Uint8Array(64 * 48 * 3).fill(90), width: 64, height: 48 },
    { size: 64 },
  );
  assert.deepEqual(r.sizes, [{ width: 64, height: 48 }]);
  const same = await yolo5.load((await hub()).model);
  assert.equal(same.model, (await hub()).model);
});

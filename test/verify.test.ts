/**
 * Data-set verification of odd files: a folder in place of a label file, a corrupt label cache,
 * truncated, CMYK and giant-header JPEGs (checked once, at verification, as the reference does).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readDataConfig } from '../lib/config/data';
import { loadSplit } from '../lib/data/split';
import { cacheRoot } from '../lib/native/paths';
import { native } from '../lib/native/addon';
import { fixture, tempDir } from './helpers';
import { bmpPixels, flatJpeg } from './jpeg-bytes';

/** A one-split data set in a fresh folder: images (name → bytes) and labels (name → text). */
function dataSet(images: Record<string, Buffer>, labels: Record<string, string | null>) {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'images'));
  fs.mkdirSync(path.join(dir, 'labels'));
  for (const [name, bytes] of Object.entries(images))
    fs.writeFileSync(path.join(dir, 'images', name), bytes);
  for (const [name, text] of Object.entries(labels)) {
    const file = path.join(dir, 'labels', name);
    // null: a folder where the label file should be.
    if (text === null) fs.mkdirSync(file);
    else fs.writeFileSync(file, text);
  }
  fs.writeFileSync(
    path.join(dir, 'd.yaml'),
    `path: ${dir}\ntrain: images\nval: images\nnames: [a, b]\n`,
  );
  return { dir, data: readDataConfig(path.join(dir, 'd.yaml')) };
}

const photo = fs.readFileSync(fixture('shapes5', 'images', 'val', '00000.jpg'));
const label = '0 0.5 0.5 0.2 0.2\n';

async function verify(images: Record<string, Buffer>, labels: Record<string, string | null>) {
  const { data } = dataSet(images, labels);
  const logs: string[] = [];
  const items = await loadSplit(data, 'val', (l) => logs.push(l));
  return { items, logs, text: logs.join('\n') };
}

test('a folder where a label file should be skips that image with a warning (EISDIR)', async () => {
  const r = await verify({ 'a.jpg': photo, 'b.jpg': photo }, { 'a.txt': label, 'b.txt': null });
  assert.deepEqual(
    r.items.map((i) => path.basename(i.file)),
    ['a.jpg'],
  );
  assert.match(
    r.text,
    /b\.jpg: ignoring corrupt image\/label: .*b\.txt: cannot be read: it is a folder, not a file \(EISDIR\)/,
  );
  assert.match(r.text, /val: 2 images, 1 labelled, 0 missing labels, 0 empty, 1 corrupt/);
});

test('a corrupt label cache (null, wrong shapes) is rebuilt with a note', async () => {
  const { data } = dataSet({ 'a.jpg': photo }, { 'a.txt': label });
  const labels = path.join(cacheRoot(), 'labels');
  const before = new Set(fs.existsSync(labels) ? fs.readdirSync(labels) : []);
  const logs: string[] = [];
  const first = await loadSplit(data, 'val', (l) => logs.push(l));
  const made = fs.readdirSync(labels).filter((f) => !before.has(f));
  assert.equal(made.length, 1, `one new cache file: ${made.join(', ')}`);
  const cache = path.join(labels, made[0]!);
  const bad = [
    'null',
    '[]',
    '{"items": 5}',
    'not json',
    '{"items":[{"file":1}],"missing":0,"empty":0,"corrupt":0,"restored":0,"warnings":[]}',
    '{"items":[],"missing":-1,"empty":0,"corrupt":0,"restored":0,"warnings":[]}',
  ];
  for (const text of bad) {
    fs.writeFileSync(cache, text);
    logs.length = 0;
    const again = await loadSplit(data, 'val', (l) => logs.push(l));
    assert.deepEqual(again, first, text);
    assert.ok(
      logs.includes(`Label cache ${cache} is corrupt: rebuilding it`),
      `${text}: ${logs.join('\n')}`,
    );
    assert.ok(!logs.at(-1)!.endsWith('(cached)'), text);
  }
  logs.length = 0;
  await loadSplit(data, 'val', (l) => logs.push(l));
  assert.ok(logs.at(-1)!.endsWith('(cached)'), 'the rebuilt cache is used');
});

test('a truncated JPEG is kept with a "corrupt JPEG restored" warning and counted; one without a readable header is corrupt', async () => {
  const half = photo.subarray(0, Math.floor(photo.length / 2));
  const stub = photo.subarray(0, 40);
  const r = await verify(
    { 'a.jpg': photo, 'half.jpg': half, 'stub.jpg': stub },
    { 'a.txt': label, 'half.txt': label, 'stub.txt': label },
  );
  assert.deepEqual(
    r.items.map((i) => path.basename(i.file)),
    ['a.jpg', 'half.jpg'],
  );
  assert.match(
    r.text,
    /half\.jpg: corrupt JPEG restored: no end-of-image marker \(FF D9\).*the file is left unchanged/,
  );
  assert.match(r.text, /stub\.jpg: ignoring corrupt image/);
  assert.match(
    r.text,
    /val: 3 images, 2 labelled, 0 missing labels, 0 empty, 1 corrupt, 1 corrupt JPEGs restored/,
  );
  // Nothing is written into the data set.
  assert.equal(fs.readFileSync(r.items[1]!.file).length, half.length);
  // The decodable part is what training and detection read.
  const bmp = await native().drawDetections(half, [], { format: 'bmp' });
  assert.equal(bmpPixels(bmp!).width, r.items[1]!.width);
});

test('a CMYK JPEG decodes to RGB as OpenCV does (R = K - ((255 - C) * K >> 8))', async () => {
  // Stored (Adobe-inverted) samples: 255 is no ink.
  const blocks = [
    [255, 255, 255, 255],
    [0, 255, 255, 255],
    [200, 100, 30, 128],
    [10, 20, 30, 0],
  ];
  const jpeg = flatJpeg({ cols: 2, rows: 2, blocks });
  const bmp = bmpPixels((await native().drawDetections(jpeg, [], { format: 'bmp' }))!);
  assert.deepEqual([bmp.width, bmp.height], [16, 16]);
  const channel = (c: number, k: number) => k - (((255 - c) * k) >> 8);
  blocks.forEach(([c, m, y, k], b) => {
    const px = ((Math.floor(b / 2) * 8 + 3) * 16 + (b % 2) * 8 + 3) * 3;
    assert.deepEqual(
      [...bmp.rgb.subarray(px, px + 3)],
      [channel(c!, k!), channel(m!, k!), channel(y!, k!)],
      `block ${b} (CMYK ${blocks[b]!.join(',')})`,
    );
  });
  // And it passes verification without a warning.
  const r = await verify({ 'c.jpg': jpeg }, { 'c.txt': label });
  assert.equal(r.items.length, 1);
  assert.doesNotMatch(r.text, /WARNING/);
});

test('a header claiming 60000x60000 is refused once, at verification, before any allocation', async () => {
  const giant = flatJpeg({
    cols: 2,
    rows: 2,
    blocks: [[128], [128], [128], [128]],
    claim: [60000, 60000],
  });
  const r = await verify(
    { 'a.jpg': photo, 'giant.jpg': giant },
    { 'a.txt': label, 'giant.txt': label },
  );
  assert.deepEqual(
    r.items.map((i) => path.basename(i.file)),
    ['a.jpg'],
  );
  assert.match(
    r.text,
    /giant\.jpg: ignoring corrupt image: .*giant\.jpg: image too large \(60000x60000 is 3600000000 pixels, more than 178956970\)/,
  );
  assert.match(r.text, /1 corrupt/);
  // Decoding refuses it from the header too (OpenCV's limit, 2^30 pixels).
  await assert.rejects(native().drawDetections(giant, [], { format: 'bmp' }), /image too large/);
});

import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { readDataConfig } from '../lib/config/data';
import { labelPathFor, listImages, readLabels } from '../lib/data/labels';
import { Yolo5Error } from '../lib/errors';
import {
  ensureSyntheticDataset,
  renderSyntheticImage,
  SHAPES_A,
  SHAPES_B,
  syntheticCacheDir,
  type SyntheticSpec,
} from '../lib/data/synthetic';
import { tempDir } from './helpers';

const TINY: SyntheticSpec = {
  name: 'tiny',
  classes: ['circle', 'square', 'triangle', 'star'],
  train: 6,
  val: 3,
  size: 64,
  seed: 7,
  style: 'a',
};

/** Every file under `dir` (relative path → bytes), for byte-for-byte comparisons. */
function snapshot(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(dir, p), fs.readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

describe('synthetic data sets', () => {
  const root = tempDir('yolo5-synthetic-');

  test('generates images, labels and a data yaml the data reader accepts', async () => {
    const logs: string[] = [];
    const yaml = await ensureSyntheticDataset(TINY, root, (s) => logs.push(s));
    assert.equal(yaml, path.join(root, 'tiny', 'data.yaml'));
    assert.ok(
      logs.some((l) => l.includes('Generating')),
      logs.join('\n'),
    );
    const dir = path.join(root, 'tiny');
    for (const [split, n] of [
      ['train', 6],
      ['val', 3],
    ] as const) {
      for (let i = 0; i < n; i++) {
        const stem = String(i).padStart(5, '0');
        assert.ok(fs.existsSync(path.join(dir, 'images', split, `${stem}.jpg`)));
        assert.ok(fs.existsSync(path.join(dir, 'labels', split, `${stem}.txt`)));
      }
    }
    assert.ok(fs.existsSync(path.join(dir, '.complete')));
    // No temporary folders left behind.
    assert.deepEqual(fs.readdirSync(root), ['tiny']);

    const cfg = readDataConfig(yaml);
    assert.equal(cfg.root, dir);
    assert.equal(cfg.nc, 4);
    assert.deepEqual(cfg.names, TINY.classes);
    const train = listImages(cfg.train!, 'train');
    const val = listImages(cfg.val!, 'val');
    assert.equal(train.length, 6);
    assert.equal(val.length, 3);

    let objects = 0;
    for (const image of [...train, ...val]) {
      const file = labelPathFor(image);
      const text = fs.readFileSync(file, 'utf8');
      for (const line of text.trim().split('\n')) {
        const parts = line.split(' ');
        assert.equal(parts.length, 5, line);
        assert.match(line, /^\d+( \d\.\d{6}){4}$/);
        const [cls, cx, cy, w, h] = parts.map(Number) as [number, number, number, number, number];
        assert.ok(Number.isInteger(cls) && cls >= 0 && cls < cfg.nc, line);
        for (const v of [cx, cy, w, h]) assert.ok(v >= 0 && v <= 1, line);
        assert.ok(w > 0 && h > 0, line);
        // The box stays inside the image.
        assert.ok(cx - w / 2 >= -1e-6 && cx + w / 2 <= 1 + 1e-6, line);
        assert.ok(cy - h / 2 >= -1e-6 && cy + h / 2 <= 1 + 1e-6, line);
        objects++;
      }
      assert.equal(readLabels(file, cfg.nc).status, 'ok');
    }
    assert.ok(objects >= 9, `${objects} objects in 9 images`);
  });

  test('the same spec gives byte-identical files; a second call does not regenerate', async () => {
    const dir = path.join(root, 'tiny');
    const first = snapshot(dir);
    const marker = path.join(dir, '.complete');
    const mtime = fs.statSync(marker).mtimeMs;
    const image = path.join(dir, 'images', 'train', '00000.jpg');
    const imageMtime = fs.statSync(image).mtimeMs;
    const logs: string[] = [];
    await ensureSyntheticDataset(TINY, root, (s) => logs.push(s));
    assert.deepEqual(logs, []);
    assert.equal(fs.statSync(marker).mtimeMs, mtime);
    assert.equal(fs.statSync(image).mtimeMs, imageMtime);

    const other = tempDir('yolo5-synthetic-again-');
    await ensureSyntheticDataset(TINY, other);
    const second = snapshot(path.join(other, 'tiny'));
    assert.deepEqual([...second.keys()].sort(), [...first.keys()].sort());
    for (const [file, bytes] of first) assert.ok(bytes.equals(second.get(file)!), file);
  });

  test('a changed spec regenerates', async () => {
    const dir = path.join(root, 'tiny');
    const before = fs.readFileSync(path.join(dir, '.complete'), 'utf8');
    const labelsBefore = fs.readFileSync(path.join(dir, 'labels', 'train', '00000.txt'), 'utf8');
    const logs: string[] = [];
    await ensureSyntheticDataset({ ...TINY, seed: 8, train: 4 }, root, (s) => logs.push(s));
    assert.ok(logs.some((l) => l.includes('Generating')));
    assert.notEqual(fs.readFileSync(path.join(dir, '.complete'), 'utf8'), before);
    assert.notEqual(
      fs.readFileSync(path.join(dir, 'labels', 'train', '00000.txt'), 'utf8'),
      labelsBefore,
    );
    assert.equal(fs.readdirSync(path.join(dir, 'images', 'train')).length, 4);
    assert.deepEqual(fs.readdirSync(root), ['tiny']);
  });

  test('concurrent calls agree on one complete data set', async () => {
    const dir = tempDir('yolo5-synthetic-race-');
    const spec = { ...TINY, name: 'race', style: 'b' as const, classes: ['ring', 'heart'] };
    const [a, b] = await Promise.all([
      ensureSyntheticDataset(spec, dir),
      ensureSyntheticDataset(spec, dir),
    ]);
    assert.equal(a, b);
    assert.deepEqual(fs.readdirSync(dir), ['race']);
    assert.equal(listImages(readDataConfig(a).train!, 'train').length, 6);
  });

  test('processes generating the same data set at once leave one complete copy', async () => {
    const dir = tempDir('yolo5-synthetic-procs-');
    const spec = { ...TINY, name: 'procs', train: 12 };
    const lib = path.join(__dirname, '..', 'lib', 'data', 'synthetic.js');
    const script =
      `require(${JSON.stringify(lib)}).ensureSyntheticDataset(${JSON.stringify(spec)}, ` +
      `${JSON.stringify(dir)}).then((y) => console.log(y), (e) => { console.error(e); process.exit(1); });`;
    const runs = [0, 1, 2].map(
      () =>
        new Promise<string>((resolve, reject) => {
          execFile(process.execPath, ['-e', script], (err, stdout, stderr) =>
            err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim()),
          );
        }),
    );
    const yamls = await Promise.all(runs);
    assert.deepEqual(new Set(yamls), new Set([path.join(dir, 'procs', 'data.yaml')]));
    assert.deepEqual(fs.readdirSync(dir), ['procs']);
    const cfg = readDataConfig(yamls[0]!);
    assert.equal(listImages(cfg.train!, 'train').length, 12);
    assert.equal(fs.readdirSync(path.join(dir, 'procs', 'labels', 'train')).length, 12);
  });

  test('labels are the tight boxes of the drawn objects', () => {
    for (const spec of [TINY, { ...SHAPES_B, size: 96 }]) {
      for (let i = 0; i < 4; i++) {
        const img = renderSyntheticImage(spec, 'train', i);
        assert.equal(img.data.length, img.width * img.height * 3);
        assert.ok(img.labels.length >= 1 && img.labels.length <= 6);
        for (const [cls, cx, cy, w, h] of img.labels as [
          number,
          number,
          number,
          number,
          number,
        ][]) {
          assert.ok(cls >= 0 && cls < spec.classes.length);
          // Box edges fall on whole pixels (visible pixels' extents), at least 2 pixels wide.
          const x0 = (cx - w / 2) * spec.size;
          const y1 = (cy + h / 2) * spec.size;
          assert.ok(Math.abs(x0 - Math.round(x0)) < 1e-9 && Math.abs(y1 - Math.round(y1)) < 1e-9);
          assert.ok(w * spec.size >= 2 && h * spec.size >= 2);
        }
      }
      const again = renderSyntheticImage(spec, 'train', 3);
      assert.ok(
        Buffer.from(again.data).equals(Buffer.from(renderSyntheticImage(spec, 'train', 3).data)),
      );
    }
    // Train and val images differ, as do the two styles.
    const a = renderSyntheticImage(TINY, 'train', 0).data;
    assert.ok(!Buffer.from(a).equals(Buffer.from(renderSyntheticImage(TINY, 'val', 0).data)));
    assert.ok(
      !Buffer.from(a).equals(
        Buffer.from(renderSyntheticImage({ ...TINY, style: 'b' }, 'train', 0).data),
      ),
    );
  });

  test('built-in specs and the cache folder', () => {
    assert.deepEqual(
      {
        train: SHAPES_A.train,
        val: SHAPES_A.val,
        size: SHAPES_A.size,
        nc: SHAPES_A.classes.length,
      },
      { train: 480, val: 96, size: 256, nc: 5 },
    );
    assert.equal(SHAPES_B.classes.filter((c) => SHAPES_A.classes.includes(c)).length, 0);
    assert.notEqual(SHAPES_A.style, SHAPES_B.style);
    const saved = process.env.YOLO5_CACHE;
    try {
      process.env.YOLO5_CACHE = '/some/cache';
      assert.equal(syntheticCacheDir(), path.resolve('/some/cache/datasets'));
      delete process.env.YOLO5_CACHE;
      assert.match(syntheticCacheDir(), /[/\\]\.cache[/\\]yolo5[/\\]datasets$/);
    } finally {
      if (saved === undefined) delete process.env.YOLO5_CACHE;
      else process.env.YOLO5_CACHE = saved;
    }
  });

  test('a bad spec is refused with E_ARG', async () => {
    const root2 = tempDir('yolo5-synthetic-bad-');
    for (const bad of [
      { ...TINY, classes: ['blob'] },
      { ...TINY, classes: [] },
      { ...TINY, classes: ['circle', 'circle'] },
      { ...TINY, train: 0 },
      { ...TINY, size: 8 },
      { ...TINY, name: '../escape' },
      { ...TINY, seed: 1.5 },
      { ...TINY, style: 'c' as 'a' },
    ]) {
      await assert.rejects(ensureSyntheticDataset(bad, root2), (e: unknown) => {
        assert.ok(e instanceof Yolo5Error, String(e));
        assert.equal(e.code, 'E_ARG');
        return true;
      });
    }
    assert.deepEqual(fs.readdirSync(root2), []);
  });
});

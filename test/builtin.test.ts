import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { BUNDLED_MODEL, bundledModelPath, defaultJob } from '../lib/data/builtin';
import { SHAPES_B, SHAPES_PRETRAIN, renderSyntheticImage } from '../lib/data/synthetic';
import { loadCheckpoint } from '../lib/checkpoint';
import { expandImageSources } from '../lib/data/sources';
import { Yolo5Error } from '../lib/errors';
import { packageRoot } from '../lib/native/paths';
import { train } from '../lib/train/train';
import { runCli, tempDir } from './helpers';

const BUNDLED = '/pkg/models/yolov5n-shapes.pt';

describe('the default job', () => {
  test('no --data, --weights or --cfg: fine-tune the bundled model on SHAPES_B at 256 px', () => {
    const job = defaultJob({}, BUNDLED);
    assert.deepEqual(
      { ...job, note: undefined },
      { dataset: SHAPES_B, imgsz: 256, weights: BUNDLED, note: undefined },
    );
    assert.match(job.note!, /Fine-tuning the bundled yolov5n-shapes\.pt .* shapes-b/);
    assert.equal(defaultJob({ imgsz: 320 }, BUNDLED).imgsz, 320);
  });

  test("--weights '' or --cfg alone train from scratch; --weights alone fine-tunes on SHAPES_B", () => {
    const scratch = defaultJob({ weights: '', cfg: 'yolov5n.yaml' }, BUNDLED);
    assert.equal(scratch.weights, undefined);
    assert.equal(scratch.cfg, 'yolov5n.yaml');
    assert.equal(scratch.dataset, SHAPES_B);
    assert.match(scratch.note!, /^Training yolov5n\.yaml from scratch/);
    assert.equal(defaultJob({ weights: '' }, BUNDLED).cfg, 'yolov5n.yaml');
    const s = defaultJob({ cfg: 'yolov5s.yaml' }, BUNDLED);
    assert.deepEqual([s.weights, s.cfg], [undefined, 'yolov5s.yaml']);
    const own = defaultJob({ weights: 'mine.pt' }, BUNDLED);
    assert.deepEqual([own.weights, own.cfg, own.dataset], ['mine.pt', undefined, SHAPES_B]);
  });

  test('without the bundled model the default is yolov5n from scratch, and says why', () => {
    const job = defaultJob({}, null);
    assert.deepEqual([job.weights, job.cfg], [undefined, 'yolov5n.yaml']);
    assert.match(job.note!, /yolov5n-shapes\.pt is missing/);
  });

  test('with --data nothing is chosen for the user (only --weights "" means none)', () => {
    assert.deepEqual(defaultJob({ data: 'd.yaml' }, BUNDLED), { data: 'd.yaml' });
    assert.deepEqual(
      defaultJob({ data: 'd.yaml', weights: '', cfg: 'c.yaml', imgsz: 64 }, BUNDLED),
      {
        data: 'd.yaml',
        cfg: 'c.yaml',
        imgsz: 64,
      },
    );
    assert.deepEqual(defaultJob({ data: 'd.yaml', weights: 'w.pt' }, BUNDLED), {
      data: 'd.yaml',
      weights: 'w.pt',
    });
  });

  test('the target set keeps classes the pretraining never saw', () => {
    assert.deepEqual(
      SHAPES_B.classes.filter((c) => SHAPES_PRETRAIN.classes.includes(c)),
      [],
    );
    assert.ok(SHAPES_PRETRAIN.classes.length >= 20);
  });
});

describe('the bundled model', () => {
  test('ships in models/: yolov5n, float16, the pretraining classes, a few MB, with its record', async () => {
    const file = bundledModelPath();
    assert.equal(file, path.join(packageRoot(), 'models', BUNDLED_MODEL));
    const bytes = fs.statSync(file!).size;
    assert.ok(bytes > 1e6 && bytes < 6e6, `${bytes} bytes`);
    const ck = await loadCheckpoint(file!);
    assert.equal(ck.kind, 'yolo5');
    assert.equal(ck.epoch, -1);
    assert.deepEqual(ck.names, SHAPES_PRETRAIN.classes);
    const dtypes = new Set([...ck.state.values()].map((t) => t.dtype));
    assert.ok(dtypes.has('float16') && !dtypes.has('float32'), [...dtypes].join(' '));
    const record = JSON.parse(fs.readFileSync(file!.replace(/\.pt$/, '.json'), 'utf8')) as {
      sha256: string;
      command: string;
      epochs: number;
      seed: number;
      final: { mAP50: number };
    };
    assert.equal(
      record.sha256,
      require('node:crypto').createHash('sha256').update(fs.readFileSync(file!)).digest('hex'),
    );
    assert.match(record.command, /pretrain\.js/);
    // A small model on a busy machine (README): it localises the shapes better than it names them.
    assert.ok(record.final.mAP50 > 0.01, `mAP50 ${record.final.mAP50}`);
  });
});

describe('messages for what yolo5 cannot fetch', () => {
  test('train without --data and with missing --weights: says the job, then that nothing is downloaded', async () => {
    const logs: string[] = [];
    await assert.rejects(
      train({ weights: path.join(tempDir(), 'yolov5s.pt'), log: (l) => logs.push(l) }),
      (e: unknown) => {
        assert.ok(e instanceof Yolo5Error);
        assert.equal(e.code, 'E_FILE');
        assert.match(e.message, /yolov5s\.pt not found\. yolo5 downloads nothing/);
        assert.match(e.message, /YOLOv5 v7\.0 release/);
        assert.match(e.message, /models\/yolov5n-shapes\.pt/);
        return true;
      },
    );
    assert.match(logs[0]!, /^Fine-tuning .*yolov5s\.pt on the built-in target set shapes-b/);
  });

  test('the CLI: a missing --data names where data yamls come from', () => {
    const r = runCli('train', '--data', 'coco128.yaml', '--epochs', '1');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /coco128\.yaml" not found\. yolo5 downloads nothing/);
    assert.match(r.stderr, /leave out --data/);
    const v = runCli('val', '--weights', 'yolov5s.pt', '--data', 'coco128.yaml');
    assert.notEqual(v.status, 0);
    assert.match(v.stderr, /yolo5 downloads nothing/);
  });
});

describe('detect sources yolo5 does not read', () => {
  test('a webcam index, a URL, a stream or a video is refused with E_ARG saying so', () => {
    const dir = tempDir();
    const video = path.join(dir, 'clip.mp4');
    fs.writeFileSync(video, 'not really a video');
    for (const [src, what] of [
      ['0', /webcam index: webcams are not supported/],
      ['https://ultralytics.com/images/zidane.jpg', /URL or stream: yolo5 downloads nothing/],
      ['rtsp://example.com/media.mp4', /URL or stream/],
      [video, /is a video: videos are not supported/],
      [path.join(dir, 'missing.avi'), /is a video/],
    ] as const) {
      assert.throws(
        () => expandImageSources(src),
        (e: unknown) => e instanceof Yolo5Error && e.code === 'E_ARG' && what.test(e.message),
        src,
      );
    }
    // A folder named 0 is a folder, not a webcam.
    fs.mkdirSync(path.join(dir, '0'));
    fs.writeFileSync(path.join(dir, '0', 'a.jpg'), '');
    assert.deepEqual(expandImageSources(path.join(dir, '0')), [path.join(dir, '0', 'a.jpg')]);
  });

  test('the CLI exits non-zero on a webcam index', () => {
    const r = runCli('detect', '--weights', 'models/yolov5n-shapes.pt', '--source', '0');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /webcams are not supported/);
  });
});

describe('the pretraining set', () => {
  test('every class renders; images are deterministic, varied and labelled within bounds', () => {
    const small = { ...SHAPES_PRETRAIN, size: 128 };
    const seen = new Set<number>();
    let objects = 0;
    for (let i = 0; i < 40; i++) {
      const img = renderSyntheticImage(small, 'train', i);
      for (const [c, cx, cy, w, h] of img.labels as number[][]) {
        seen.add(c!);
        objects++;
        for (const v of [cx!, cy!, w!, h!]) assert.ok(v > 0 && v <= 1);
      }
      assert.ok(img.labels.length <= 10);
    }
    assert.ok(objects / 40 > 2, `${objects} objects in 40 images`);
    assert.ok(seen.size >= 20, `classes seen: ${seen.size}`);
    const a = renderSyntheticImage(small, 'val', 5);
    assert.deepEqual(renderSyntheticImage(small, 'val', 5), a);
  });
});

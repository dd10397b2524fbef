/**
 * Lossless interruption and resume: a run stopped at any point (AbortSignal, Ctrl-C, SIGTERM, a
 * kill at a write point) and resumed ends with the results.csv and weights of an uninterrupted
 * run with the same seed. Tiny runs: yolov5n from the fixture checkpoint, 32 images at 64 px.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, test } from 'node:test';
import { readCheckpoint } from '../lib/checkpoint';
import { train, type TrainOptions, type TrainResult, Yolo5Error } from '../lib';
import { packageRoot } from '../lib/native/paths';
import { fixture, tempDir } from './helpers';

const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
const EPOCHS = 2;

/** A data set of the fixture's first 32 images (train) and 16 (val), as txt lists. */
function smallData(): string {
  const dir = tempDir('yolo5-interrupt-data-');
  const images = fixture('shapes5', 'images', 'val');
  const files = fs.readdirSync(images).sort();
  const list = (n: number) =>
    files
      .slice(0, n)
      .map((f) => path.join(images, f))
      .join('\n');
  fs.writeFileSync(path.join(dir, 'train.txt'), `${list(32)}\n`);
  fs.writeFileSync(path.join(dir, 'val.txt'), `${list(16)}\n`);
  const names = "['ellipse', 'rect', 'triangle', 'cross', 'ring']";
  fs.writeFileSync(
    path.join(dir, 'data.yaml'),
    `path: ${dir}\ntrain: train.txt\nval: val.txt\nnames: ${names}\n`,
  );
  return path.join(dir, 'data.yaml');
}

const data = smallData();
const weights = fixture('yolov5n-shapes5.pt');
const FLAGS = ['--img', '64', '--batch', '8', '--workers', '1', '--seed', '1', '--noautoanchor'];

function apiOptions(project: string, name: string, extra: Partial<TrainOptions> = {}) {
  return {
    data,
    weights,
    imgsz: 64,
    batch: 8,
    workers: 1,
    seed: 1,
    noautoanchor: true,
    epochs: EPOCHS,
    project,
    name,
    ...extra,
  } satisfies TrainOptions;
}

function cliArgs(project: string, name: string, ...more: string[]): string[] {
  const base = ['--data', data, '--weights', weights, '--epochs', String(EPOCHS)];
  return ['train', ...base, ...FLAGS, '--project', project, '--name', name, ...more];
}

interface Child {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI; `when` is polled every 100 ms and `act` runs once it holds (to send a signal).
 * `stop` kills the child as soon as its output matches (a run going the wrong way).
 */
function runCli(
  args: string[],
  opts: {
    env?: Record<string, string>;
    when?: () => boolean;
    act?: (pid: number) => void;
    stop?: RegExp;
  } = {},
): Promise<Child> {
  const child = spawn(process.execPath, [cli, ...args], {
    cwd: packageRoot(),
    env: { ...process.env, ...opts.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (opts.stop?.test(stdout)) child.kill('SIGKILL');
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setInterval(() => {
    if (opts.when?.()) {
      clearInterval(timer);
      opts.act?.(child.pid!);
    }
  }, 100);
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearInterval(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

function csvRows(dir: string): string[] {
  const f = path.join(dir, 'results.csv');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n') : [];
}

/** The weights (every tensor's bytes) of a checkpoint. */
function tensors(file: string): Map<string, Buffer> {
  const ck = readCheckpoint(file);
  return new Map(
    [...ck.state].map(([k, t]) => [
      k,
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    ]),
  );
}

function assertSameRun(dir: string, reference: TrainResult, what: string): void {
  assert.equal(
    fs.readFileSync(path.join(dir, 'results.csv'), 'utf8'),
    fs.readFileSync(path.join(reference.saveDir, 'results.csv'), 'utf8'),
    `${what}: results.csv`,
  );
  for (const f of ['last.pt', 'best.pt']) {
    const file = path.join(dir, 'weights', f);
    assert.ok(fs.existsSync(file), `${what}: ${f} exists`);
    assert.deepEqual(
      tensors(file),
      tensors(path.join(reference.saveDir, 'weights', f)),
      `${what}: ${f}`,
    );
  }
  const left = fs.readdirSync(path.join(dir, 'weights')).filter((f) => f.endsWith('.tmp'));
  assert.deepEqual(left, [], `${what}: no temporary files left`);
}

describe('an interrupted run resumes to the uninterrupted result', () => {
  const project = tempDir();
  let reference: TrainResult;
  before(async () => {
    reference = await train(apiOptions(project, 'reference'));
    assert.equal(reference.status, 'completed');
    assert.equal(csvRows(reference.saveDir).length, EPOCHS + 1);
  });

  test('AbortSignal in the middle of an epoch keeps the last finished epoch (defect 2)', async () => {
    const controller = new AbortController();
    const run = train(apiOptions(project, 'abort', { signal: controller.signal }));
    let abortedAt: { epoch: number; batch: number; batches: number } | undefined;
    run.on('batch', (b) => {
      if (b.epoch === 1 && b.batch < b.batches - 1 && !abortedAt) {
        abortedAt = b;
        controller.abort();
      }
    });
    const r = await run;
    assert.equal(r.status, 'aborted');
    assert.ok(abortedAt, 'aborted in the middle of epoch 1');
    assert.equal(readCheckpoint(r.last!).epoch, 0, 'last.pt holds the finished epoch 0');
    const resumed = await train({ resume: r.last! });
    assert.equal(resumed.status, 'completed');
    assert.deepEqual(
      resumed.epochs.map((e) => e.epoch),
      [1],
    );
    assertSameRun(r.saveDir, reference, 'resumed after an abort');
  });

  test('--nosave: an interruption still saves the last finished epoch, and resumes exactly', async () => {
    const controller = new AbortController();
    const run = train(apiOptions(project, 'nosave', { nosave: true, signal: controller.signal }));
    run.on('batch', (b) => {
      if (b.epoch === 1 && b.batch < b.batches - 1) controller.abort();
    });
    const r = await run;
    assert.equal(r.status, 'aborted');
    assert.equal(readCheckpoint(r.last!).epoch, 0);
    assert.equal(r.best, undefined, '--nosave writes best.pt only at the end');
    await train({ resume: r.last! });
    assert.equal(
      fs.readFileSync(path.join(r.saveDir, 'results.csv'), 'utf8'),
      fs.readFileSync(path.join(reference.saveDir, 'results.csv'), 'utf8'),
    );
    assert.deepEqual(tensors(path.join(r.saveDir, 'weights', 'last.pt')), tensors(reference.last!));
  });

  test('yolo5 train --resume keeps the saved epochs and opt.yaml (defect 1)', async () => {
    const controller = new AbortController();
    const run = train(apiOptions(project, 'epochs', { signal: controller.signal }));
    run.on('epoch', () => controller.abort());
    const r = await run;
    const opt = fs.readFileSync(path.join(r.saveDir, 'opt.yaml'), 'utf8');
    const resumed = await runCli(['train', '--resume', r.last!], {
      stop: new RegExp(`Training (?!${EPOCHS} )\\d+ epochs`),
    });
    assert.match(resumed.stdout, new RegExp(`Training ${EPOCHS} epochs`), resumed.stdout);
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    assert.doesNotMatch(resumed.stdout, /Extending/);
    assert.equal(
      fs.readFileSync(path.join(r.saveDir, 'opt.yaml'), 'utf8'),
      opt,
      'opt.yaml unchanged',
    );
    assertSameRun(r.saveDir, reference, 'resumed by the CLI');
  });

  test('Ctrl-C stops after the batch, saves, exits 130, and resumes exactly (defect 5)', async () => {
    const dir = path.join(project, 'sigint');
    const c = await runCli(cliArgs(project, 'sigint'), {
      when: () => csvRows(dir).length >= 2,
      act: (pid) => process.kill(pid, 'SIGINT'),
    });
    assert.equal(c.code, 130, `exit ${c.code} ${c.signal}\n${c.stdout}\n${c.stderr}`);
    assert.match(c.stdout, /Stopping after this batch/);
    assert.match(c.stdout, /Training 2 epochs on 32 images, batch 8 /, '--batch reaches the run');
    assert.match(c.stdout, /Training aborted: .*weights in /);
    const r = await train({ resume: path.join(dir, 'weights', 'last.pt') });
    assert.equal(r.status, 'completed');
    assertSameRun(dir, reference, 'resumed after Ctrl-C');
  });

  test('SIGTERM is handled like Ctrl-C: saved, exit 143 (defect 5)', async () => {
    const dir = path.join(project, 'sigterm');
    const c = await runCli(cliArgs(project, 'sigterm'), {
      when: () => csvRows(dir).length >= 2,
      act: (pid) => process.kill(pid, 'SIGTERM'),
    });
    assert.equal(c.code, 143, `exit ${c.code} ${c.signal}\n${c.stdout}\n${c.stderr}`);
    const ck = readCheckpoint(path.join(dir, 'weights', 'last.pt'));
    assert.equal(ck.epoch, csvRows(dir).length - 2, 'last.pt is the last row of results.csv');
  });

  test('killed while best.pt is copied: the resumed run restores it and removes the temporary (defect 3)', async () => {
    const dir = path.join(project, 'best-copy');
    const c = await runCli(cliArgs(project, 'best-copy'), {
      env: { YOLO5_TEST_CRASH_AT: 'best-copy:0' },
    });
    assert.equal(c.signal, 'SIGKILL', c.stdout + c.stderr);
    const weightsDir = path.join(dir, 'weights');
    assert.ok(fs.readdirSync(weightsDir).some((f) => /^best\.pt\.\d+\.tmp$/.test(f)));
    assert.ok(!fs.existsSync(path.join(weightsDir, 'best.pt')));
    const r = await train({ resume: path.join(weightsDir, 'last.pt') });
    assert.equal(r.status, 'completed');
    assert.ok(r.final, 'best.pt validated at the end');
    assertSameRun(dir, reference, 'resumed after a kill during the best.pt copy');
  });

  test('killed between last.pt and its results.csv row: the row is restored (defect 4)', async () => {
    const dir = path.join(project, 'row');
    const c = await runCli(cliArgs(project, 'row'), {
      env: { YOLO5_TEST_CRASH_AT: 'results-row:0' },
    });
    assert.equal(c.signal, 'SIGKILL', c.stdout + c.stderr);
    assert.equal(csvRows(dir).length, 1, 'epoch 0 is in last.pt but not in results.csv');
    assert.equal(readCheckpoint(path.join(dir, 'weights', 'last.pt')).epoch, 0);
    await train({ resume: path.join(dir, 'weights', 'last.pt') });
    assertSameRun(dir, reference, 'resumed after a kill before the row');
  });

  test('--resume --epochs extends a finished run with a recomputed schedule; without it, it is an error', async () => {
    const dir = path.join(project, 'extended');
    fs.cpSync(reference.saveDir, dir, { recursive: true });
    const last = path.join(dir, 'weights', 'last.pt');
    await assert.rejects(train({ resume: last }), {
      code: 'E_ARG',
      message: /is a finished run \(2 epochs\); pass --epochs/,
    });
    const lines: string[] = [];
    const r = await train({ resume: last, epochs: EPOCHS + 1, log: (l) => lines.push(l) });
    assert.equal(r.status, 'completed');
    assert.deepEqual(
      r.epochs.map((e) => e.epoch),
      [EPOCHS],
    );
    assert.ok(
      lines.some((l) => /Extending the run from 2 to 3 epochs: the learning-rate schedule/.test(l)),
    );
    assert.ok(lines.some((l) => /fresh optimizer state/.test(l)));
    const rows = csvRows(dir);
    assert.equal(rows.length, EPOCHS + 2);
    assert.deepEqual(rows.slice(0, -1), csvRows(reference.saveDir), 'the earlier rows are kept');
    assert.match(fs.readFileSync(path.join(dir, 'opt.yaml'), 'utf8'), /^epochs: 3$/m);
    assert.equal(readCheckpoint(r.last!).epoch, -1, 'stripped again');
  });
});

test('train({ signal }) aborted before it starts rejects and creates nothing (defect 6)', async () => {
  const project = tempDir();
  await assert.rejects(
    train(apiOptions(project, 'never', { signal: AbortSignal.abort() })),
    (e: unknown) => e instanceof Yolo5Error && e.code === 'E_ABORTED',
  );
  assert.deepEqual(fs.readdirSync(project), []);
  // Aborted during the first epoch: resolved, and no paths to files that do not exist.
  const controller = new AbortController();
  const run = train(apiOptions(project, 'first', { signal: controller.signal }));
  run.on('batch', () => controller.abort());
  const r = await run;
  assert.equal(r.status, 'aborted');
  assert.equal(r.last, undefined);
  assert.equal(r.best, undefined);
  assert.deepEqual(r.epochs, []);
});

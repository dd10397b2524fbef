/**
 * Distributed data-parallel training on loopback: 2 ranks on CPU (Gloo), each its own process,
 * launched through torchrun's variables or `--nproc 2`. Small: yolov5n from the reference
 * checkpoint at 128 px on 16 images, one thread per rank.
 */
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as yaml from 'js-yaml';
import { readCheckpoint } from '../lib/checkpoint';
import { readHyp } from '../lib/config/hyp';
import { packageRoot } from '../lib/native/paths';
import { freePort } from '../lib/train/launch';
import { fixture, tempDir } from './helpers';

const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
const weights = fixture('yolov5n-shapes5.pt');
const images = path.join(fixture('shapes5'), 'images', 'val');

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

interface Started {
  child: ReturnType<typeof spawn>;
  output: () => string;
  done: Promise<Exit>;
}

function start(args: string[], env: Record<string, string> = {}): Started {
  const t0 = Date.now();
  const child = spawn(process.execPath, [cli, ...args], {
    cwd: packageRoot(),
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Exit>((resolve) =>
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }),
    ),
  );
  return { child, output: () => stdout + stderr, done };
}

function rankEnv(rank: number, port: number, extra: Record<string, string> = {}) {
  return {
    WORLD_SIZE: '2',
    RANK: String(rank),
    LOCAL_RANK: String(rank),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(port),
    YOLO5_DIST_TIMEOUT: '60',
    ...extra,
  };
}

/** A data set of the fixture's first `n` images (train) and 4 (val), as .txt lists. */
function tinySet(dir: string, n: number): string {
  const files = fs
    .readdirSync(images)
    .filter((f) => f.endsWith('.jpg'))
    .sort()
    .map((f) => path.join(images, f));
  fs.writeFileSync(path.join(dir, 'train.txt'), files.slice(0, n).join('\n'));
  fs.writeFileSync(path.join(dir, 'val.txt'), files.slice(0, 4).join('\n'));
  const file = path.join(dir, 'data.yaml');
  fs.writeFileSync(
    file,
    yaml.dump({
      path: dir,
      train: 'train.txt',
      val: 'val.txt',
      nc: 5,
      names: ['ellipse', 'rect', 'triangle', 'cross', 'ring'],
    }),
  );
  return file;
}

/**
 * The default hyps with the box and class gains at 0: the objectness loss alone is a sum over
 * images, so 2 × 8 images and 1 × 16 are the same function (the box and class losses are means
 * over each rank's matched targets, which the reference's × WORLD_SIZE only approximates).
 */
function objectnessHyp(dir: string): string {
  const file = path.join(dir, 'hyp.yaml');
  fs.writeFileSync(file, yaml.dump({ ...readHyp(undefined, () => {}), box: 0, cls: 0 }));
  return file;
}

function trainArgs(data: string, project: string, name: string, extra: string[] = []): string[] {
  return [
    'train',
    ...['--data', data, '--weights', weights, '--img', '128', '--epochs', '1'],
    ...['--workers', '1', '--noautoanchor', '--project', project, '--name', name],
    ...extra,
  ];
}

/**
 * Runs that are still training when a test kills or interrupts them 1.5 s in: 50 epochs of the
 * 64-image set (one epoch alone took under 1.5 s once the step got faster).
 */
const LONG = ['--epochs', '50'];
const LONG_HEADER = /Training 50 epochs/;

/** The test hook's file (README): names and shapes, then float32 gradients. */
function readGradients(file: string): Map<string, Float32Array> {
  const buf = fs.readFileSync(file);
  const nl = buf.indexOf(10);
  const head = JSON.parse(buf.subarray(0, nl).toString()) as {
    names: string[];
    shapes: number[][];
  };
  const out = new Map<string, Float32Array>();
  let offset = nl + 1;
  head.names.forEach((name, i) => {
    const n = head.shapes[i]!.reduce((a, b) => a * b, 1);
    const copy = Buffer.from(buf.subarray(offset, offset + n * 4));
    out.set(name, new Float32Array(copy.buffer, copy.byteOffset, n));
    offset += n * 4;
  });
  assert.equal(offset, buf.length, `${file}: size`);
  return out;
}

/** Every float tensor's raw bytes in a checkpoint's state. */
function stateBytes(file: string): Map<string, Buffer> {
  const ck = readCheckpoint(file);
  return new Map(
    [...ck.state].map(([k, t]) => [
      k,
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    ]),
  );
}

const frozen10 = (name: string) => /^model\.[0-9]\./.test(name);

function assertFrozenBitIdentical(last: string): void {
  const before = stateBytes(weights);
  const after = stateBytes(last);
  let frozen = 0;
  let moved = 0;
  for (const [name, bytes] of after) {
    if (!name.endsWith('.weight') && !name.endsWith('.bias')) continue;
    if (frozen10(name)) {
      assert.ok(bytes.equals(before.get(name)!), `${name} changed`);
      frozen++;
    } else if (!bytes.equals(before.get(name)!)) moved++;
  }
  assert.ok(frozen > 20, `frozen tensors checked: ${frozen}`);
  assert.ok(moved > 0, 'trainable tensors moved');
}

/** "N trainable" from the Model line, and the bytes the all-reduce sent from the DDP line. */
function traffic(stdout: string): { trainable: number; bytes: number } {
  const trainable = /parameters, ([\d,]+) trainable/.exec(stdout);
  const bytes = /DDP: ([\d,]+) bytes of gradients all-reduced per step/.exec(stdout);
  assert.ok(trainable && bytes, stdout);
  return {
    trainable: Number(trainable[1]!.replace(/,/g, '')),
    bytes: Number(bytes[1]!.replace(/,/g, '')),
  };
}

describe('a bad distributed environment is one clear line, and nothing hangs', () => {
  const data = fixture('shapes5', 'data.yaml');
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'RANK >= WORLD_SIZE',
      { WORLD_SIZE: '2', RANK: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29999' },
      /Expected integer between 0 and 1 for RANK \(WORLD_SIZE=2\) but received "2"/,
    ],
    [
      'a missing MASTER_PORT',
      { WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: '127.0.0.1' },
      /WORLD_SIZE=2 asks for distributed training.*missing: MASTER_PORT/,
    ],
    [
      'a non-numeric WORLD_SIZE',
      { WORLD_SIZE: 'two', RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29999' },
      /Expected integer between 1 and 65536 for WORLD_SIZE but received "two"/,
    ],
    [
      'a non-numeric MASTER_PORT',
      { WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: 'http' },
      /Expected integer between 1 and 65535 for MASTER_PORT but received "http"/,
    ],
  ];
  for (const [what, env, message] of cases) {
    test(what, () => {
      const r = spawnSync(process.execPath, [cli, 'train', '--data', data, '--epochs', '1'], {
        cwd: packageRoot(),
        env: { ...process.env, ...env },
        encoding: 'utf8',
      });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    });
  }

  test('MASTER_PORT in use on rank 0', async () => {
    const dir = tempDir();
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await start(trainArgs(tinySet(dir, 16), dir, 'run'), rankEnv(0, port)).done;
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^yolo5: DDP rank 0 of 2 \\(store 127\\.0\\.0\\.1:${port}\\): rendezvous failed: MASTER_PORT ${port} is in use`,
        ),
      );
    } finally {
      server.close();
    }
  });

  test('no rank 0: the rendezvous times out naming the rank and the address', async () => {
    const dir = tempDir();
    const port = await freePort();
    const env = rankEnv(1, port, { YOLO5_DIST_TIMEOUT: '3' });
    const r = await start(trainArgs(tinySet(dir, 16), dir, 'run'), env).done;
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `DDP rank 1 of 2 \\(store 127\\.0\\.0\\.1:${port}\\): rendezvous failed: could not reach the store that rank 0 hosts at 127\\.0\\.0\\.1:${port} within 3 s`,
      ),
    );
    assert.ok(r.ms < 30000, `${r.ms} ms`);
  });

  test('what DDP refuses: an uneven global batch, --image-weights, --evolve', () => {
    const env = { ...process.env, ...rankEnv(0, 29999) };
    const run = (...extra: string[]) =>
      spawnSync(process.execPath, [cli, 'train', '--data', data, ...extra], {
        cwd: packageRoot(),
        env,
        encoding: 'utf8',
      });
    let r = run('--batch', '15');
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /batch\) 15 is the global batch and must split evenly over WORLD_SIZE=2/,
    );
    r = run('--image-weights');
    assert.match(r.stderr, /--image-weights \(imageWeights\) is not supported with distributed/);
    r = run('--evolve', '2');
    assert.match(r.stderr, /--evolve is not supported with distributed training \(WORLD_SIZE=2\)/);
  });
});

test('2 ranks × 8 images (--sync-bn) average to the gradients of 1 process × 16; --nproc 2 trains --freeze 10 to a last.pt with frozen tensors bit-identical', async () => {
  const dir = tempDir();
  const data = tinySet(dir, 16);
  const hyp = objectnessHyp(dir);
  const common = ['--batch', '16', '--hyp', hyp, '--freeze', '10', '--noval'];
  const one = await start(trainArgs(data, dir, 'one', [...common, '--threads', '1']), {
    YOLO5_TEST_GRADIENTS: path.join(dir, 'one.grad'),
  }).done;
  assert.equal(one.code, 0, one.stderr);
  const two = await start(
    trainArgs(data, dir, 'two', [...common, '--sync-bn', '--nproc', '2', '--threads', '2']),
    { YOLO5_TEST_GRADIENTS: path.join(dir, 'two.grad') },
  ).done;
  assert.equal(two.code, 0, two.stderr);
  assert.match(two.stdout, /DDP: world size 2, backend gloo/);
  // After the all-reduce both ranks hold the very same gradients.
  const g0 = fs.readFileSync(path.join(dir, 'two.grad.rank0'));
  assert.ok(g0.equals(fs.readFileSync(path.join(dir, 'two.grad.rank1'))), 'ranks differ');
  const single = readGradients(path.join(dir, 'one.grad'));
  const ddp = readGradients(path.join(dir, 'two.grad.rank0'));
  assert.deepEqual([...ddp.keys()], [...single.keys()]);
  assert.ok(![...ddp.keys()].some(frozen10), 'a frozen tensor has a gradient');
  let worst = { rel: 0, name: '' };
  for (const [name, a] of ddp) {
    const b = single.get(name)!;
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < b.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(b[i]!));
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    }
    const rel = maxDiff / Math.max(maxAbs, 1e-12);
    if (rel > worst.rel) worst = { rel, name };
  }
  assert.ok(worst.rel <= 1e-5, `largest relative difference ${worst.rel} in ${worst.name}`);
  // Only rank 0 wrote: one run folder, and its last.pt keeps the frozen layers exactly.
  assert.deepEqual(
    fs
      .readdirSync(dir)
      .filter((f) => f.startsWith('two'))
      .sort(),
    ['two', 'two.grad.rank0', 'two.grad.rank1'],
  );
  assertFrozenBitIdentical(path.join(dir, 'two', 'weights', 'last.pt'));
  const { trainable, bytes } = traffic(two.stdout);
  assert.equal(bytes, 4 * trainable, 'the all-reduce sent exactly the trainable gradients');
});

test('env-launched ranks train --freeze 10 from a checkpoint; only rank 0 writes or logs; --resume with the same and another world size', async () => {
  const dir = tempDir();
  const data = tinySet(dir, 16);
  const port = await freePort();
  const args = trainArgs(data, dir, 'run', ['--batch', '8', '--freeze', '10', '--threads', '1']);
  const [r0, r1] = await Promise.all([
    start(args, rankEnv(0, port)).done,
    start(args, rankEnv(1, port)).done,
  ]);
  assert.equal(r0.code, 0, r0.stderr);
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(
    r0.stdout,
    /DDP: world size 2, backend gloo \(store 127\.0\.0\.1:\d+\); batch 8 = 2 × 4/,
  );
  assert.equal(r1.stdout.trim(), '', 'rank 1 printed');
  assert.deepEqual(fs.readdirSync(dir).sort(), ['data.yaml', 'run', 'train.txt', 'val.txt']);
  assert.ok(fs.existsSync(path.join(dir, 'run', 'weights', 'best.pt')));
  assert.equal(
    fs
      .readFileSync(path.join(dir, 'run', 'results.csv'), 'utf8')
      .trim()
      .split('\n').length,
    2,
  );
  // One TensorBoard file and one set of plots: rank 1 wrote nothing into the run folder either.
  const files = fs.readdirSync(path.join(dir, 'run'));
  assert.equal(files.filter((f) => f.startsWith('events.out.tfevents')).length, 1, `${files}`);
  assert.ok(files.includes('labels.jpg') && files.includes('results.png'), `${files}`);
  assertFrozenBitIdentical(path.join(dir, 'run', 'weights', 'last.pt'));
  const { trainable, bytes } = traffic(r0.stdout);
  assert.equal(bytes, 4 * trainable);

  // --resume with the same world size extends the run; another world size says what changes.
  const last = path.join(dir, 'run', 'weights', 'last.pt');
  const more = await start([
    'train',
    '--resume',
    last,
    '--epochs',
    '2',
    '--nproc',
    '2',
    '--threads',
    '2',
  ]).done;
  assert.equal(more.code, 0, more.stderr);
  assert.match(more.stdout, /DDP: world size 2/);
  assert.doesNotMatch(more.stdout, /world size 2 and continues/);
  const rows = () =>
    fs
      .readFileSync(path.join(dir, 'run', 'results.csv'), 'utf8')
      .trim()
      .split('\n');
  assert.equal(rows().length, 3);
  const alone = await start(['train', '--resume', last, '--epochs', '3', '--threads', '1']).done;
  assert.equal(alone.code, 0, alone.stderr);
  assert.match(
    alone.stdout,
    /WARNING: --resume: .*last\.pt was trained with world size 2 and continues with 1/,
  );
  assert.equal(rows().length, 4);
  assertFrozenBitIdentical(last);
});

describe('a rank killed mid-epoch ends the run with a clear error on the others', () => {
  const longEpoch = (dir: string) =>
    trainArgs(tinySet(dir, 64), dir, 'run', ['--batch', '4', '--threads', '1', '--noval', ...LONG]);

  test('env-launched: rank 0 fails at its next collective, naming itself and the store', async () => {
    const dir = tempDir();
    const port = await freePort();
    const env = { YOLO5_DIST_TIMEOUT: '20' };
    const r0 = start(longEpoch(dir), rankEnv(0, port, env));
    const r1 = start(longEpoch(dir), rankEnv(1, port, env));
    await waitFor(() => LONG_HEADER.test(r0.output()), 60000);
    await new Promise((r) => setTimeout(r, 1500));
    const killed = Date.now();
    r1.child.kill('SIGKILL');
    const e0 = await r0.done;
    assert.ok(Date.now() - killed < 20000, `rank 0 took ${Date.now() - killed} ms to stop`);
    assert.equal((await r1.done).signal, 'SIGKILL');
    assert.equal(e0.code, 1, e0.stderr);
    assert.match(
      e0.stderr,
      new RegExp(`^yolo5: DDP rank 0 of 2 \\(store 127\\.0\\.0\\.1:${port}\\): .* failed: `, 'm'),
    );
    assert.equal(e0.stderr.trim().split('\n').length, 1, e0.stderr);
  });

  test('--nproc 2: the launcher ends with the killed rank named', async () => {
    const dir = tempDir();
    const run = start([...longEpoch(dir), '--nproc', '2'], { YOLO5_DIST_TIMEOUT: '20' });
    const ranks = await ranksMidEpoch(run);
    process.kill(ranks[1]!, 'SIGKILL');
    const e = await run.done;
    assert.equal(e.code, 1, e.stderr);
    assert.match(e.stderr, /yolo5: the run stopped because rank 1 was killed by SIGKILL/);
    assert.match(e.stderr, /DDP rank 0 of 2 \(store 127\.0\.0\.1:\d+\): .* failed: /);
  });
});

test('--nproc 2: Ctrl-C stops every rank at the same step and the launcher exits 130, no rank left', async () => {
  const dir = tempDir();
  const args = trainArgs(tinySet(dir, 64), dir, 'run', ['--batch', '4', '--threads', '2', ...LONG]);
  const run = start([...args, '--nproc', '2', '--noval'], { YOLO5_DIST_TIMEOUT: '20' });
  const ranks = await ranksMidEpoch(run);
  const interrupted = Date.now();
  run.child.kill('SIGINT');
  const e = await run.done;
  assert.equal(e.code, 130, e.stdout + e.stderr);
  assert.ok(Date.now() - interrupted < 20000, `took ${Date.now() - interrupted} ms to stop`);
  assert.doesNotMatch(e.stderr, /DDP rank \d of 2 .* failed|internal error/, e.stderr);
  for (const pid of ranks) {
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `rank pid ${pid} still runs`);
  }
});

/** Once a --nproc launcher's run is 1.5 s into its training: the pids of its two ranks. */
async function ranksMidEpoch(run: Started): Promise<number[]> {
  await waitFor(() => LONG_HEADER.test(run.output()), 60000);
  await new Promise((r) => setTimeout(r, 1500));
  const ranks = spawnSync('ps', ['-o', 'pid=', '--ppid', String(run.child.pid)], {
    encoding: 'utf8',
  })
    .stdout.trim()
    .split(/\s+/)
    .map(Number);
  assert.equal(ranks.length, 2, `ranks: ${ranks}`);
  return ranks;
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}

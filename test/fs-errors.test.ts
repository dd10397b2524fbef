/**
 * File-system failures are one-line E_FILE errors naming the path and the problem (no stack
 * traces): run folders that cannot be made, checkpoints that cannot be written or copied.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
// The module object itself: what lib/ calls through, so a mocked method is seen there.
import nodeFs = require('node:fs');
import * as path from 'node:path';
import { mock, test } from 'node:test';
import { copyCheckpoint, writeCheckpoint } from '../lib/checkpoint';
import { Yolo5Error } from '../lib/errors';
import { train } from '../lib';
import { makeRunDir } from '../lib/report/runs';
import { fixture, golden, runCli, tempDir } from './helpers';

const runs = path.join(__dirname, '..', 'lib', 'report', 'runs.js');

/** An fs error as Node makes them (code, syscall, path). */
function fsFailure(code: string, syscall: string, file: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`${code}: failed, ${syscall} '${file}'`);
  e.code = code;
  e.syscall = syscall;
  e.path = file;
  return e;
}

function assertFileError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Yolo5Error, `expected a Yolo5Error, got ${String(e)}`);
    assert.equal(e.code, 'E_FILE');
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

/** makeRunDir in a child process (bounded in time); its error as { code, message }, or the dir. */
function makeRunDirChild(project: string, uid?: number): { code?: string; message?: string } {
  const script = `try { console.log(JSON.stringify({ dir: require(${JSON.stringify(runs)}).makeRunDir('val', { project: ${JSON.stringify(project)} }) })); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, name: e.name })); }`;
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
    ...(uid !== undefined ? { uid, gid: uid } : {}),
  });
  assert.equal(r.error, undefined, `makeRunDir(${project}) did not finish: ${String(r.error)}`);
  return JSON.parse(r.stdout) as { code?: string; message?: string };
}

test('run folder: --project that is a file names the file', () => {
  const dir = tempDir();
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, 'x');
  assertFileError(
    () => makeRunDir('train', { project: file }),
    new RegExp(`Cannot create the run folder ${file}/exp: ${file} is a file, not a folder`),
  );
  assertFileError(
    () => makeRunDir('detect', { project: path.join(file, 'deeper') }),
    new RegExp(`${file} is a file, not a folder`),
  );
  // The CLI prints that one line, no stack trace.
  const cfg = path.join(dir, 'model.yaml');
  fs.writeFileSync(cfg, JSON.stringify(golden().yaml));
  const r = runCli(
    'val',
    '--weights',
    fixture('yolov5n-shapes5.state_dict.pt'),
    '--cfg',
    cfg,
    '--data',
    fixture('shapes5', 'data.yaml'),
    '--img',
    '64',
    '--project',
    file,
  );
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^yolo5: Cannot create the run folder .*a-file\/exp: .*a-file is a file/m);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test(
  'run folder: --project /proc/nope fails at once instead of looping',
  { skip: !fs.existsSync('/proc/self') },
  () => {
    const r = makeRunDirChild('/proc/nope');
    assert.equal(r.code, 'E_FILE', JSON.stringify(r));
    assert.match(
      r.message!,
      /Cannot create the run folder \/proc\/nope\/exp: \/proc does not allow new folders/,
    );
  },
);

test('run folder: a read-only project folder says permission denied (not ENOENT)', (t) => {
  const dir = tempDir();
  const ro = path.join(dir, 'ro');
  fs.mkdirSync(ro, { mode: 0o555 });
  fs.chmodSync(ro, 0o555);
  fs.chmodSync(dir, 0o755);
  // root ignores permissions: the check runs as nobody then.
  const root = process.getuid?.() === 0;
  const r = makeRunDirChild(ro, root ? 65534 : undefined);
  if (r.code === undefined) return t.skip('this file system does not enforce read-only folders');
  assert.equal(r.code, 'E_FILE', JSON.stringify(r));
  assert.match(
    r.message!,
    new RegExp(`Cannot create the run folder ${ro}/exp: .*permission denied \\(EACCES\\)`),
  );
});

test('run folder: a read-only file system says so (EROFS, which recursive mkdir reports as ENOENT)', () => {
  const dir = tempDir();
  const real = nodeFs.mkdirSync;
  const m = mock.method(nodeFs, 'mkdirSync', (p: fs.PathLike, o?: fs.MakeDirectoryOptions) => {
    if (String(p).startsWith(dir)) throw fsFailure('EROFS', 'mkdir', String(p));
    return real(p, o);
  });
  try {
    assertFileError(
      () => makeRunDir('val', { project: path.join(dir, 'p') }),
      new RegExp(
        `Cannot create the run folder ${dir}/p/exp: ${dir}/p: read-only file system \\(EROFS\\)`,
      ),
    );
  } finally {
    m.mock.restore();
  }
});

test('checkpoints: a full disk (ENOSPC) while writing or copying is one line naming the file, and leaves no temporary', async () => {
  const dir = tempDir();
  const last = path.join(dir, 'last.pt');
  const w = mock.method(nodeFs, 'writeSync', () => {
    throw fsFailure('ENOSPC', 'write', last);
  });
  try {
    assertFileError(
      () => writeCheckpoint(last, { model: new Map(), yaml: {}, names: [] }),
      new RegExp(`Cannot write the checkpoint ${last}: no space left on the device \\(ENOSPC\\)`),
    );
  } finally {
    w.mock.restore();
  }
  assert.deepEqual(fs.readdirSync(dir), [], 'no temporary left');
  writeCheckpoint(last, { model: new Map(), yaml: {}, names: [] });
  const c = mock.method(nodeFs.promises, 'copyFile', async (_from: string, to: string) => {
    await fs.promises.writeFile(to, 'partial');
    throw fsFailure('ENOSPC', 'copyfile', to);
  });
  try {
    const best = path.join(dir, 'best.pt');
    await assert.rejects(copyCheckpoint(last, best), (e: unknown) => {
      assert.ok(e instanceof Yolo5Error && e.code === 'E_FILE', String(e));
      assert.match(
        e.message,
        new RegExp(`Cannot copy ${last} to ${best}: no space left on the device \\(ENOSPC\\)`),
      );
      return true;
    });
  } finally {
    c.mock.restore();
  }
  assert.deepEqual(fs.readdirSync(dir), ['last.pt'], 'no temporary left');
});

test('training: a full disk while copying best.pt ends the run with one E_FILE line', async () => {
  const dir = tempDir();
  const c = mock.method(nodeFs.promises, 'copyFile', async (_from: string, to: string) => {
    throw fsFailure('ENOSPC', 'copyfile', to);
  });
  try {
    await assert.rejects(
      train({
        data: fixture('shapes5', 'data.yaml'),
        weights: fixture('yolov5n-shapes5.pt'),
        imgsz: 64,
        batch: 32,
        epochs: 1,
        workers: 1,
        project: dir,
        name: 'full',
        noautoanchor: true,
        noval: true,
      }),
      (e: unknown) => {
        assert.ok(e instanceof Yolo5Error, `expected a Yolo5Error, got ${String(e)}`);
        assert.equal(e.code, 'E_FILE');
        assert.match(e.message, /best\.pt: no space left on the device \(ENOSPC\)/);
        return true;
      },
    );
  } finally {
    c.mock.restore();
  }
});

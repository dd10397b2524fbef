import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../lib/native/paths';
import { runtimeInfo } from '../lib/native/runtime';
import { systemErrorLine } from '../lib/cli/exit';

const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: packageRoot() });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('yolo5 params --cfg yolov5s.yaml prints every parameter and 7,235,389 parameters', () => {
  const r = run('params', '--cfg', 'yolov5s.yaml');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[1]!, /^\s+0\s+model\.0\.conv\.weight\s+\[32, 3, 6, 6\]\s+3,456\s+yes$/);
  assert.equal(lines.filter((l) => /^\s+\d+\s+model\./.test(l)).length, 177);
  assert.equal(
    lines.at(-1),
    'yolov5s summary: 214 layers, 7,235,389 parameters, 7,235,389 gradients, 16.6 GFLOPs',
  );
});

test('yolo5 params --freeze 10 --nc 3 --json', () => {
  const r = run('params', '--cfg', 'yolov5n', '--nc', '3', '--freeze', '10', '--json');
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    parameters: { name: string; requiresGrad: boolean; numel: number }[];
    frozen: string[];
    info: { parameters: number; gradients: number };
  };
  assert.equal(out.info.parameters, 1_767_976);
  assert.ok(out.frozen.every((n) => /^model\.\d\./.test(n)));
  assert.equal(out.parameters.find((p) => p.name === 'model.9.cv2.bn.bias')!.requiresGrad, false);
  assert.equal(out.parameters.find((p) => p.name === 'model.10.conv.weight')!.requiresGrad, true);
  assert.equal(
    out.info.gradients,
    out.parameters.filter((p) => p.requiresGrad).reduce((s, p) => s + p.numel, 0),
  );
});

test('yolo5 params --freeze with several layers and with prefixes', () => {
  const layers = run('params', '--cfg', 'yolov5n', '--freeze', '0', '1', '--json');
  assert.equal(layers.code, 0, layers.stderr);
  const frozen = (JSON.parse(layers.stdout) as { frozen: string[] }).frozen;
  assert.deepEqual([...new Set(frozen.map((n) => n.split('.')[1]))], ['0', '1']);
  const prefix = run('params', '--cfg', 'yolov5n', '--freeze', 'model.24.', '--json');
  assert.equal(prefix.code, 0, prefix.stderr);
  assert.equal((JSON.parse(prefix.stdout) as { frozen: string[] }).frozen.length, 6);
});

test('--help, --version and bad input', () => {
  const help = run('--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: yolo5/);
  assert.match(help.stdout, /params/);
  const v = run('--version');
  assert.equal(v.code, 0);
  assert.match(v.stdout.trim(), /^\d+\.\d+\.\d+$/);
  const missing = run('params', '--cfg', 'nope.yaml');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^yolo5: Model config "nope\.yaml" not found/);
  const badNc = run('params', '--cfg', 'yolov5n', '--nc', 'x');
  assert.notEqual(badNc.code, 0);
  assert.match(badNc.stderr, /Expected integer >= 1 for --nc but received "x"/);
  const badFreeze = run('params', '--cfg', 'yolov5n', '--freeze', 'model.99.');
  assert.equal(badFreeze.code, 1);
  assert.match(badFreeze.stderr, /matches no parameter/);
});

test('yolo5 doctor reports the addon, LibTorch, CUDA and threads truthfully', () => {
  const r = run('doctor', '--json');
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as {
    libtorch: { version: string; file: string; dir: string; source: string };
    cuda: { available: boolean };
    threads: number;
    addon: { file: string; kind: string };
  };
  const rt = runtimeInfo();
  assert.equal(info.libtorch.version, rt.libtorch);
  // The LibTorch the process really runs (the dynamic linker's answer), not a guess.
  assert.equal(info.libtorch.file, rt.libtorchFile);
  assert.ok(fs.existsSync(info.libtorch.file) && /libtorch_cpu/.test(info.libtorch.file));
  assert.equal(info.cuda.available, rt.cuda.available);
  assert.ok(info.threads >= 1);
  assert.equal(info.addon.kind, 'source build');
  assert.equal(info.addon.file, rt.addon.file);
  assert.ok(info.addon.file.endsWith(path.join('build', 'Release', 'yolo5.node')));
  const text = run('doctor');
  assert.match(text.stdout, /LibTorch: \d+\.\d+/);
});

test('bad train and val flags: one line naming the problem, exit 2, no stack trace (defect 7)', () => {
  const cases: [string[], RegExp][] = [
    [['train', '--optimizer', 'adam'], /'adam' is invalid\. Allowed choices are SGD, Adam, AdamW/],
    [['train', '--cache', 'disk'], /'disk' is invalid\. Allowed choices are ram/],
    [
      ['train', '--freeze', '10', 'model.24.'],
      /Expected only layer numbers or only name prefixes for --freeze but received "10 model\.24\."/,
    ],
    [
      ['val', '--weights', 'w.pt', '--data', 'd.yaml', '--task', 'bogus'],
      /'bogus' is invalid\. Allowed choices are val, test, train/,
    ],
    [
      ['train', '--evolve-parent', 'best'],
      /'best' is invalid\. Allowed choices are single, weighted/,
    ],
    [['train', '--bogus'], /unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = run(...args);
    const what = `yolo5 ${args.join(' ')}: exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`;
    assert.equal(r.code, 2, what);
    assert.match(r.stderr, /^yolo5: [^\n]+\n$/, `${what}: one line`);
    assert.match(r.stderr, message, what);
    assert.equal(r.stdout, '', what);
  }
});

test('a Node file-system error that reaches the CLI unwrapped is one line with the path', () => {
  const missing = path.join(os.tmpdir(), `yolo5-missing-${process.pid}`, 'x.yaml');
  let caught: unknown;
  try {
    fs.readFileSync(missing);
  } catch (e) {
    caught = e;
  }
  const line = systemErrorLine(caught);
  assert.ok(line !== undefined, 'an ENOENT from readFileSync is recognised');
  assert.match(
    line,
    new RegExp(`^Cannot open ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*\\(ENOENT\\)$`),
  );
  assert.equal(systemErrorLine(new Error('plain bug')), undefined, 'other errors keep their stack');
  assert.equal(systemErrorLine(Object.assign(new Error('x'), { code: 'E_ARG' })), undefined);
});

/**
 * A plain state dict used with a model yaml it does not quite fit: the tensors that do not load are
 * named with their shapes; val and detect refuse (E_WEIGHTS), transfer for training warns.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { detect, loadModel, val } from '../lib';
import { Yolo5Error } from '../lib/errors';
import { fixture, golden, tempDir } from './helpers';

const g = golden();
const stateDict = fixture('yolov5n-shapes5.state_dict.pt');

/**
 * The fixture's yaml with the first Conv's kernel 6 → 5 (model.0.conv.weight changes shape) and
 * a deeper C3 at row 2 (model.2.m.1.* are not in the file).
 */
function misfitCfg(): string {
  const yaml = structuredClone(g.yaml) as { backbone: unknown[][] };
  yaml.backbone[0] = [-1, 1, 'Conv', [64, 5, 2, 2]];
  yaml.backbone[2] = [-1, 6, 'C3', [128]];
  const file = path.join(tempDir(), 'misfit.yaml');
  fs.writeFileSync(file, JSON.stringify(yaml));
  return file;
}

const wrongShape =
  /model\.0\.conv\.weight is \[16, 3, 6, 6\] in the file but \[16, 3, 5, 5\] in the model/;
const missing = /model\.2\.m\.1\.cv1\.conv\.weight \[16, 16, 1, 1\] is missing/;

function isWeightsError(e: unknown): boolean {
  assert.ok(e instanceof Yolo5Error, `expected a Yolo5Error, got ${String(e)}`);
  assert.equal(e.code, 'E_WEIGHTS');
  assert.match(e.message, wrongShape);
  assert.match(e.message, missing);
  assert.match(e.message, /… and \d+ more/);
  assert.ok(!e.message.includes('\n'), 'one line');
  return true;
}

test('val with weights that do not fit --cfg is an E_WEIGHTS error naming the tensors', async () => {
  const cfg = misfitCfg();
  await assert.rejects(
    val({ weights: stateDict, cfg, data: fixture('shapes5', 'data.yaml'), imgsz: 64 }),
    isWeightsError,
  );
});

test('detect with weights that do not fit --cfg is an E_WEIGHTS error naming the tensors', async () => {
  const cfg = misfitCfg();
  await assert.rejects(
    detect(fixture('shapes5', 'images', 'val', '00000.jpg'), {
      weights: stateDict,
      cfg,
      imgsz: 64,
    }),
    isWeightsError,
  );
});

test('transfer (training) with weights that do not fit --cfg goes on with a warning naming them', async () => {
  const lines: string[] = [];
  const model = await loadModel({
    cfg: misfitCfg(),
    weights: stateDict,
    log: (l) => lines.push(l),
  });
  const total = model.stateDict().length;
  assert.equal(model.transfer?.missing.length, 12);
  assert.ok(
    lines.includes(`Transferred ${total - 13}/${total} items from ${stateDict}`),
    lines.join('\n'),
  );
  const warning = lines.find((l) => l.startsWith('WARNING: 13 tensors of'));
  assert.ok(warning, lines.join('\n'));
  assert.match(warning, /not transferred \(fresh initialisation kept\)/);
  assert.match(warning, wrongShape);
  assert.match(warning, missing);
});

test('transfer to another nc says once that the Detect head starts fresh, and warns of nothing else', async () => {
  const lines: string[] = [];
  await loadModel({ weights: fixture('yolov5n-shapes5.pt'), nc: 3, log: (l) => lines.push(l) });
  assert.ok(
    lines.includes(
      'Detect head model.24.m starts fresh: the weights are for nc=5, the model has nc=3',
    ),
    lines.join('\n'),
  );
  assert.ok(!lines.some((l) => l.startsWith('WARNING')), lines.join('\n'));
});

test('export and prune with weights that do not fit --cfg refuse (E_WEIGHTS), writing nothing', () => {
  const cfg = misfitCfg();
  const dir = tempDir();
  const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
  const commands = [
    ['export', '--weights', stateDict, '--cfg', cfg, '--out', path.join(dir, 'm.onnx')],
    [
      'prune',
      '--weights',
      stateDict,
      '--cfg',
      cfg,
      '--amount',
      '0.1',
      '--out',
      path.join(dir, 'p.pt'),
    ],
  ];
  for (const args of commands) {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 1, `${args[0]}: ${r.stderr}`);
    assert.match(r.stderr, wrongShape, args[0]);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${args[0]} says one line: ${r.stderr}`);
  }
  assert.deepEqual(fs.readdirSync(dir), [], 'nothing written');
});

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { loadModel, Yolo5Error } from '../lib';
import { tempDir } from './helpers';

const dir = tempDir('yolo5-config-');

function writeCfg(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

/** A tiny two-level model whose rows are given; the Detect row is appended. */
function tinyCfg(rows: string, detectFrom = '[-1]', anchors = '[[10,13, 16,30]]'): string {
  return `nc: 2
depth_multiple: 1.0
width_multiple: 0.25
anchors: ${anchors}
backbone:
  [
${rows}
  ]
head:
  [[${detectFrom}, 1, Detect, [nc, anchors]]]
`;
}

async function expectCfgError(
  text: string,
  pattern: RegExp,
  row?: number,
  line?: number,
): Promise<void> {
  const file = writeCfg(`bad-${Math.random().toString(36).slice(2)}.yaml`, text);
  await assert.rejects(loadModel({ cfg: file }), (e: unknown) => {
    assert.ok(e instanceof Yolo5Error, `expected a Yolo5Error, got ${String(e)}`);
    assert.equal(e.code, 'E_MODEL_CFG');
    assert.match(e.message, pattern);
    assert.ok(e.message.includes(file), `message names the file: ${e.message}`);
    if (row !== undefined) assert.equal(e.row, row);
    if (line !== undefined) assert.equal(e.line, line);
    return true;
  });
}

describe('bad model configs are clear errors naming the file and row', () => {
  test('unknown module', () =>
    expectCfgError(
      tinyCfg('   [-1, 1, Conv, [64, 3, 2]],\n   [-1, 1, C4, [64]],'),
      /row 1 \(model\.1\) unknown module "C4"/,
      1,
      8,
    ));
  test('wrong arg count', () =>
    expectCfgError(
      tinyCfg('   [-1, 1, Conv, [64, 3, 2, 1, 1, 1, 1, true, 9]],'),
      /Conv takes 2\.\.8 args/,
      0,
    ));
  test('from out of range', () =>
    expectCfgError(
      tinyCfg('   [-1, 1, Conv, [64, 3, 2]],\n   [[-1, 5], 1, Concat, [1]],'),
      /from index 5 is out of range/,
      1,
    ));
  test('first conv-like arg must be a channel count', () =>
    expectCfgError(tinyCfg('   [-1, 1, Conv, [nope, 3, 2]],'), /output channels/, 0));
  test('row that is not a 4-list', () =>
    expectCfgError(tinyCfg('   [-1, 1, Conv],'), /must be \[from, number, module, args\]/, 0));
  test('Detect not last', () =>
    expectCfgError(
      `nc: 2\ndepth_multiple: 1\nwidth_multiple: 1\nanchors: [[10,13]]\nbackbone: [[-1, 1, Conv, [8, 3, 2]], [-1, 1, Detect, [nc, anchors]]]\nhead: [[-1, 1, Conv, [8, 1, 1]]]\n`,
      /Detect must be the last row/,
      1,
    ));
  test('anchor levels and Detect inputs disagree', () =>
    expectCfgError(
      tinyCfg('   [-1, 1, Conv, [64, 3, 2]],', '[-1]', '[[10,13], [20,30]]'),
      /1 inputs but 2 anchor levels/,
    ));
  test('missing keys and bad values', async () => {
    await expectCfgError('nc: 2\nbackbone: []\n', /missing key "depth_multiple"/);
    await expectCfgError(
      tinyCfg('   [-1, 1, Conv, [64, 3, 2]],').replace('nc: 2', 'nc: 0'),
      /nc must be an integer >= 1/,
    );
    await expectCfgError(
      tinyCfg('   [-1, 1, Conv, [64, 3, 2]],').replace(
        'anchors: [[10,13, 16,30]]',
        'anchors: [[10,13,16]]',
      ),
      /anchors must be/,
    );
    await expectCfgError(
      tinyCfg('   [-1, 1, Conv, [64, 3, 2]],') + 'activation: nn.Mish()\n',
      /activation must be one of/,
    );
  });
});

test('a file that is not yaml is E_YAML with its line; a missing file is E_FILE', async () => {
  const file = writeCfg('broken.yaml', 'nc: 2\nbackbone: [[-1, 1, Conv\nhead: ]\n');
  await assert.rejects(loadModel({ cfg: file }), (e: unknown) => {
    assert.ok(e instanceof Yolo5Error);
    assert.equal(e.code, 'E_YAML');
    assert.match(e.message, /broken\.yaml:\d+: not valid yaml/);
    assert.equal(typeof e.line, 'number');
    return true;
  });
  const notMapping = writeCfg('list.yaml', '- 1\n- 2\n');
  await assert.rejects(loadModel({ cfg: notMapping }), {
    code: 'E_MODEL_CFG',
    message: /must be a yaml mapping/,
  });
  await assert.rejects(loadModel({ cfg: path.join(dir, 'nope.yaml') }), {
    code: 'E_FILE',
    message: /not found/,
  });
  await assert.rejects(loadModel({}), { code: 'E_ARG' });
  await assert.rejects(loadModel({ cfg: 'yolov5n', nc: 0 }), { code: 'E_ARG', message: /nc/ });
});

test('custom blocks (DWConv, GhostConv, C3Ghost, C3x, Focus, BottleneckCSP, SPP, CrossConv) build and run', async () => {
  const rows = [
    '[-1, 1, Focus, [32, 3]]', // 0  /2
    '[-1, 1, DWConv, [64, 3, 2]]', // 1  /4
    '[-1, 2, BottleneckCSP, [64]]', // 2
    '[-1, 1, GhostConv, [128, 3, 2]]', // 3  /8
    '[-1, 1, C3Ghost, [128]]', // 4
    '[-1, 1, Conv, [128, 3, 2]]', // 5  /16
    '[-1, 2, C3x, [128]]', // 6
    '[-1, 1, SPP, [128, [5, 9, 13]]]', // 7
    '[-1, 2, GhostBottleneck, [128, 3, 1]]', // 8  (repeated: a Sequential of copies)
    '[-1, 1, CrossConv, [128, 3, 1, 1, 1.0, True]]', // 9
    '[-1, 1, nn.Upsample, [None, 2, "nearest"]]', // 10 /8
    '[[-1, 4], 1, Concat, [1]]', // 11
    '[-1, 1, Bottleneck, [64, False]]', // 12
  ]
    .map((r) => `   ${r},`)
    .join('\n');
  const file = writeCfg(
    'custom.yaml',
    tinyCfg(rows, '[12, 9]', '[[10,13, 16,30], [30,61, 62,45]]').replace(
      'width_multiple: 0.25',
      'width_multiple: 0.5',
    ),
  );
  const model = await loadModel({ cfg: file });
  const names = model.namedParameters().map((p) => p.name);
  for (const expected of [
    'model.0.conv.conv.weight', // Focus wraps a Conv named conv
    'model.2.cv2.weight', // BottleneckCSP's plain Conv2d
    'model.2.bn.running_mean'.replace('running_mean', 'weight'),
    'model.4.m.0.conv.0.cv1.conv.weight', // C3Ghost → GhostBottleneck → Sequential
    'model.6.m.1.cv1.conv.weight', // C3x with n=2 CrossConv blocks
    'model.8.1.conv.2.cv2.bn.bias', // a repeated row → Sequential children 0, 1
    'model.24.m.0.weight'.replace('24', '13'),
  ]) {
    assert.ok(
      names.includes(expected),
      `${expected} in ${names.filter((n) => n.startsWith(expected.slice(0, 8))).join(' ')}`,
    );
  }
  assert.deepEqual(model.info().stride, [8, 16]);
  const out = await model.forward(new Float32Array(2 * 3 * 64 * 64).fill(0.25), [2, 3, 64, 64]);
  assert.deepEqual(out.output!.shape, [2, 2 * (8 * 8 + 4 * 4), 7]);
  assert.ok(out.output!.data.every(Number.isFinite));
  // DWConv uses groups = gcd(c1, c2): a depthwise-style weight of (c2, c1/g, k, k).
  const dw = model.namedParameters().find((p) => p.name === 'model.1.conv.weight')!;
  assert.deepEqual(dw.shape, [32, 1, 3, 3]);
});

test('activation override and input channels from the yaml', async () => {
  const file = writeCfg(
    'leaky.yaml',
    tinyCfg('   [-1, 1, Conv, [64, 3, 2]],\n   [-1, 1, Conv, [64, 3, 2]],') +
      'activation: nn.LeakyReLU(0.1)\nch: 1\n',
  );
  const model = await loadModel({ cfg: file });
  assert.deepEqual(model.namedParameters()[0]!.shape, [16, 1, 3, 3]);
  const out = await model.forward(new Float32Array(32 * 32).fill(1), [1, 1, 32, 32]);
  assert.ok(out.output!.data.every(Number.isFinite));
});

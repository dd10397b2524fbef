/**
 * `--include yolov5`: the export is the reference's own stripped checkpoint layout. No Python torch
 * runs here, so the test checks what Python's loader depends on against the reference-written
 * fixture (yolov5n-shapes5.pt): the same top-level keys; the same classes at the same places of
 * the module tree with the same attribute names in the same order and equal non-tensor values;
 * tensors of the same dtype and shape; one activation object shared by every Conv; and yolo5's
 * reader gets back bit-identical tensors, config, names and stride, and the same detections.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exportModel } from '../lib/export';
import { loadModel } from '../lib/model/load';
import { detect } from '../lib';
import {
  PyDict,
  PyObject,
  PySet,
  PyTuple,
  isHostTensor,
  loadTorchArchive,
  readCheckpoint,
  type PyValue,
} from '../lib/checkpoint';
import { spawnSync } from 'node:child_process';
import { packageRoot } from '../lib/native/paths';
import { fixture, tempDir } from './helpers';

const REFERENCE = fixture('yolov5n-shapes5.pt');

/** Attributes the export leaves out, with why: train.py sets them for training only. */
const TRAINING_ONLY = new Set([
  'models.yolo.DetectionModel.hyp',
  'models.yolo.DetectionModel.class_weights',
]);

/** Walks two pickled values in step; collects every difference with its path. */
function compare(a: PyValue, b: PyValue, where: string, out: string[], cls = ''): void {
  const kind = (v: PyValue) =>
    isHostTensor(v)
      ? 'tensor'
      : v instanceof PyObject
        ? `object ${v.__class__}`
        : v === null
          ? 'None'
          : Array.isArray(v)
            ? 'list'
            : ((v as { pyType?: string })?.pyType ?? typeof v);
  if (kind(a) !== kind(b)) {
    out.push(`${where}: ${kind(a)} vs ${kind(b)}`);
    return;
  }
  if (isHostTensor(a) && isHostTensor(b)) {
    // Detect's grid caches are sized by the reference's last forward; the export starts them empty.
    if (/\.(grid|anchor_grid)\[\d\]$/.test(where)) return;
    if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join())
      out.push(`${where}: ${a.dtype}[${a.shape}] vs ${b.dtype}[${b.shape}]`);
    return;
  }
  if (a instanceof PyObject && b instanceof PyObject) {
    const ka = [...a.attributes.keys()].filter((k) => !TRAINING_ONLY.has(`${a.__class__}.${k}`));
    const kb = [...b.attributes.keys()].filter((k) => !TRAINING_ONLY.has(`${b.__class__}.${k}`));
    if (ka.join() !== kb.join()) out.push(`${where} (${a.__class__}) attributes: ${ka} vs ${kb}`);
    for (const k of ka)
      if (b.attributes.has(k)) compare(a.get(k)!, b.get(k)!, `${where}.${k}`, out, a.__class__);
    return;
  }
  if (a instanceof PyDict && b instanceof PyDict) {
    const ka = [...a.entries.keys()].map(String);
    const kb = [...b.entries.keys()].map(String);
    if (ka.join() !== kb.join()) out.push(`${where} keys: ${ka} vs ${kb}`);
    for (const [k, v] of a.entries)
      if (b.entries.has(k)) compare(v, b.get(k)!, `${where}[${String(k)}]`, out, cls);
    return;
  }
  if (a instanceof PyTuple && b instanceof PyTuple)
    return compare(a.items, b.items, where, out, cls);
  if (a instanceof PySet && b instanceof PySet) {
    if (a.items.size !== b.items.size)
      out.push(`${where}: set sizes ${a.items.size} vs ${b.items.size}`);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) out.push(`${where}: ${a.length} vs ${b.length} items`);
    a.forEach((v, i) => i < b.length && compare(v, b[i]!, `${where}[${i}]`, out, cls));
    return;
  }
  if (!Object.is(a, b) && !(where.endsWith('.yaml_file') || where.endsWith('date')))
    out.push(`${where}: ${String(a)} vs ${String(b)}`);
}

function acts(root: PyValue): Set<PyValue> {
  const seen = new Set<PyValue>();
  const walk = (v: PyValue) => {
    if (!(v instanceof PyObject)) return;
    const mods = v.get('_modules');
    if (!(mods instanceof PyDict)) return;
    if (v.__class__ === 'models.common.Conv') seen.add(mods.get('act')!);
    for (const m of mods.entries.values()) walk(m);
  };
  walk(root);
  return seen;
}

test('yolov5 export: the reference checkpoint structure, identical tensors, same detections', async () => {
  const dir = tempDir();
  const model = await loadModel({ weights: REFERENCE });
  const file = path.join(dir, 'exported.pt');
  const r = await exportModel(model, { format: 'yolov5', file });
  assert.equal(r.format, 'yolov5');
  assert.ok(r.bytes > 1e6);
  await assert.rejects(exportModel(model, { format: 'yolov5', file }), /already exists/);

  const ours = loadTorchArchive(fs.readFileSync(file), file).value as PyDict;
  const ref = loadTorchArchive(fs.readFileSync(REFERENCE), REFERENCE).value as PyDict;
  assert.deepEqual(
    [...ours.entries.keys()].filter((k) => k !== 'opt' && k !== 'git'),
    [...ref.entries.keys()].filter((k) => k !== 'opt' && k !== 'git'),
  );
  const diffs: string[] = [];
  compare(ours.get('model')!, ref.get('model')!, 'model', diffs);
  assert.deepEqual(diffs, []);
  // The comparison sees a change: one attribute gone, one value changed.
  const detectOf = (top: PyDict) =>
    (((top.get('model') as PyObject).get('_modules') as PyDict).get('model') as PyObject).get(
      '_modules',
    ) as PyDict;
  const head = detectOf(ours).get('24') as PyObject;
  head.attributes.delete('inplace');
  (detectOf(ours).get('12') as PyObject).attributes.set('d', 2);
  const broken: string[] = [];
  compare(ours.get('model')!, ref.get('model')!, 'model', broken);
  assert.equal(broken.length, 2, broken.join('\n'));
  // The reference's Conv blocks share one activation module; so do ours.
  assert.equal(acts(ref.get('model')!).size, 1);
  assert.equal(acts(ours.get('model')!).size, 1);

  // Read back by yolo5: the same tensors bit for bit (both float16), config, names, stride.
  const a = readCheckpoint(file);
  const b = readCheckpoint(REFERENCE);
  assert.equal(a.kind, 'yolov5');
  assert.deepEqual([...a.state.keys()], [...b.state.keys()]);
  for (const [name, t] of b.state) {
    const u = a.state.get(name)!;
    assert.equal(u.dtype, t.dtype, name);
    assert.deepEqual(u.shape, t.shape, name);
    assert.deepEqual(
      Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength),
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      name,
    );
  }
  assert.deepEqual(a.yaml, b.yaml);
  assert.deepEqual(a.names, b.names);
  assert.deepEqual(a.stride, b.stride);
  assert.equal(a.epoch, -1);

  // CPython's own unpickler (the machinery torch.load uses with weights_only=False; classes
  // replaced by empty stand-ins) rebuilds the same tree, floats and shared objects included.
  const tree = (f: string) =>
    spawnSync('python3', [path.join(packageRoot(), 'scripts', 'pickle-tree.py'), f], {
      encoding: 'utf8',
    });
  const py = tree(file);
  if (py.error === undefined) {
    assert.equal(py.status, 0, py.stderr);
    const known = /^\s*(\.grid|\.anchor_grid|\.yaml_file|\.hyp|\.class_weights|opt|date):/;
    const lines = (text: string) => text.split('\n').filter((l) => !known.test(l));
    assert.deepEqual(lines(py.stdout), lines(tree(REFERENCE).stdout));
  }

  const image = fixture('shapes5', 'images', 'val', '00000.jpg');
  const again = await loadModel({ weights: file });
  const [x] = await detect(image, { model, imgsz: 256, conf: 0.05 });
  const [y] = await detect(image, { model: again, imgsz: 256, conf: 0.05 });
  assert.ok(x!.boxes.length > 0);
  assert.deepEqual(y!.boxes, x!.boxes);
  fs.rmSync(dir, { recursive: true });
});

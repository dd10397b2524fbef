#!/usr/bin/env node
// Trains a few tiny runs with fixed seeds on the fixture set and prints one SHA-256 per file and
// per checkpoint part (results.csv, model/EMA tensors, optimizer buffers), so that two builds can
// be compared bit for bit: run it on each and diff the outputs.
//   node scripts/train-fingerprint.js [package root, default: this checkout] > fingerprint.json
// Covers SGD with warmup, AdamW with a cosine schedule and multi-scale, Adam with frozen layers
// and rect batches, and an aborted run's resumable checkpoint (optimizer state) and its resume, in
// fp32; then SGD and frozen Adam in bf16 autocast (on a CPU without bf16 hardware they run
// emulated: slow, and their hashes differ from such a CPU's).
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(process.argv[2] ?? path.join(__dirname, '..'));
const lib = require(path.join(root, 'dist', 'index.js'));
const { readCheckpoint } = require(path.join(root, 'dist', 'checkpoint', 'index.js'));
const fixtures = path.resolve(
  process.env.YOLO5_FIXTURES ?? path.join(__dirname, '..', '..', 'shared', 'fixtures', 'reference'),
);
process.env.YOLO5_CACHE ??= fs.mkdtempSync(path.join(os.tmpdir(), 'yolo5-fp-cache-'));

const sha = (data) => crypto.createHash('sha256').update(data).digest('hex').slice(0, 16);

function tensorsHash(map) {
  const h = crypto.createHash('sha256');
  for (const [name, t] of [...map.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    h.update(name);
    h.update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

function optimizerHash(opt) {
  if (!opt || typeof opt !== 'object') return null;
  const h = crypto.createHash('sha256');
  h.update(`${opt.type} ${opt.last_opt_step}`);
  for (const name of Object.keys(opt.state).sort()) {
    for (const key of Object.keys(opt.state[name]).sort()) {
      const t = opt.state[name][key];
      h.update(`${name}.${key}`);
      h.update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
  }
  return h.digest('hex').slice(0, 16);
}

function describe(file) {
  if (!fs.existsSync(file)) return null;
  const ck = readCheckpoint(file);
  return {
    state: tensorsHash(ck.state),
    model: ck.modelState ? tensorsHash(ck.modelState) : null,
    optimizer: optimizerHash(ck.optimizer),
    epoch: ck.epoch,
  };
}

function runFolder(dir) {
  const csv = path.join(dir, 'results.csv');
  return {
    results: sha(fs.readFileSync(csv)),
    rows: fs.readFileSync(csv, 'utf8').trim().split('\n').length - 1,
    last: describe(path.join(dir, 'weights', 'last.pt')),
    best: describe(path.join(dir, 'weights', 'best.pt')),
  };
}

async function main() {
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'yolo5-fp-'));
  const base = {
    data: path.join(fixtures, 'shapes5', 'data.yaml'),
    weights: path.join(fixtures, 'yolov5n-shapes5.pt'),
    imgsz: 128,
    batch: 16,
    epochs: 2,
    workers: 1,
    seed: 3,
    threads: 2,
    noautoanchor: true,
    amp: 'off',
    project,
  };
  const configs = {
    sgd: {},
    adamw_cos_multiscale: { optimizer: 'AdamW', cosLr: true, multiScale: true },
    adam_freeze_rect: { optimizer: 'Adam', freeze: 10, rect: true, hyp: { lr0: 0.001 } },
    sgd_bf16: { amp: 'bf16' },
    adam_freeze_bf16: { optimizer: 'Adam', freeze: 10, amp: 'bf16', hyp: { lr0: 0.001 } },
  };
  const out = {};
  for (const [name, extra] of Object.entries(configs)) {
    const r = await lib.train({ ...base, ...extra, name });
    out[name] = { status: r.status, ...runFolder(r.saveDir) };
  }
  // Aborted after epoch 0: a resumable last.pt with optimizer state; then resumed to the end.
  for (const [name, extra] of Object.entries({ sgd: {}, adamw: { optimizer: 'AdamW' } })) {
    const controller = new AbortController();
    const aborted = lib.train({
      ...base,
      ...extra,
      epochs: 3,
      name: `resume-${name}`,
      signal: controller.signal,
    });
    aborted.on('epoch', (e) => e.epoch === 0 && controller.abort());
    const a = await aborted;
    out[`aborted_${name}`] = { status: a.status, ...runFolder(a.saveDir) };
    const resumed = await lib.train({ resume: a.last, workers: 1, threads: 2 });
    out[`resumed_${name}`] = { status: resumed.status, ...runFolder(resumed.saveDir) };
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  fs.rmSync(project, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../lib/native/paths';
import { type Model } from '../lib/model/model';
import { loadModel } from '../lib/model/load';
import { readHyp } from '../lib/config/hyp';
import type { NativeTrainerOptions } from '../lib/native/addon';

// Caches (label verification, the synthetic data set) go to a fresh folder, not the user's.
process.env.YOLO5_CACHE ??= fs.mkdtempSync(path.join(os.tmpdir(), 'yolo5-cache-'));
// `amp: 'auto'` is fp32 on CPUs without bf16 hardware: the suite's numbers (golden comparisons,
// bit-identical resumes) are fp32 ones on every machine; test/amp.test.ts asks for bf16 itself.
process.env.YOLO5_CPU_BF16 ??= '0';

/** Golden data from the reference implementation; read-only, never write next to it. */
export const fixtures = path.resolve(
  process.env.YOLO5_FIXTURES ?? path.join(packageRoot(), '..', 'shared', 'fixtures', 'reference'),
);

export function fixture(...parts: string[]): string {
  return path.join(fixtures, ...parts);
}

export interface Golden {
  nc: number;
  names: Record<string, string>;
  stride: number[];
  anchors_grid_units: number[][][];
  yaml: Record<string, unknown>;
  forward: { image: string; input: BinRef; output: BinRef }[];
  loss: Record<string, unknown> & { input: BinRef; targets: number[][] };
  val: Record<string, unknown>;
  detect: unknown[];
}
export interface BinRef {
  file: string;
  shape: number[];
  dtype: string;
}

export function golden(): Golden {
  return JSON.parse(fs.readFileSync(fixture('yolov5n-shapes5.golden.json'), 'utf8')) as Golden;
}

/** Reads a raw little-endian float32 file named by the golden json. */
export function readBin(ref: BinRef): Float32Array {
  const buf = fs.readFileSync(fixture(ref.file));
  const n = ref.shape.reduce((a, b) => a * b, 1);
  assert.equal(buf.byteLength, n * 4, `${ref.file}: size does not match shape ${ref.shape}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

/** Runs the built CLI (`yolo5 …`) in the package root; its exit status and output. */
export function runCli(...args: string[]): {
  status: number | null;
  stdout: string;
  stderr: string;
} {
  const cli = path.join(__dirname, '..', 'lib', 'cli', 'index.js');
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: packageRoot() });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh temporary folder for a test's outputs (never next to the fixtures). */
export function tempDir(prefix = 'yolo5-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** max |a - b| / max |b|, with the index of the largest difference, for messages. */
export function relMaxDiff(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): { rel: number; at: number; abs: number } {
  assert.equal(a.length, b.length, `length ${a.length} != ${b.length}`);
  let maxRef = 0;
  let maxDiff = 0;
  let at = -1;
  for (let i = 0; i < b.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= maxDiff)) {
      maxDiff = d;
      at = i;
    }
  }
  return { rel: maxRef === 0 ? maxDiff : maxDiff / maxRef, at, abs: maxDiff };
}

let goldenShared: Promise<Model> | undefined;
/** The reference's trained yolov5n (state dict + the golden yaml and names), loaded once per file. */
export function goldenModel(): Promise<Model> {
  const g = golden();
  goldenShared ??= loadModel({
    cfg: g.yaml as never,
    weights: fixture('yolov5n-shapes5.state_dict.pt'),
    names: Object.values(g.names),
  });
  return goldenShared;
}

/**
 * Native trainer options as lib/train builds them for the fixture set (shapes5: 5 classes), at
 * `imgsz` and `batch`: SGD, the default hyperparameters and their loss gains, 1 loader worker,
 * cached NHWC batches, fp32; `over` replaces any field.
 */
export function fixtureTrainerOptions(
  imgsz: number,
  batch: number,
  over: Partial<NativeTrainerOptions> = {},
): NativeTrainerOptions {
  const hyp = readHyp(undefined);
  return {
    ...{ imgsz, batch, stride: 32, augment: true, rect: false, cache: true, workers: 1 },
    ...{ seed: 0, epochs: 1, nbs: 64, optimizer: 'SGD', cosLr: false, freezeBn: false },
    ...{ channelsLast: true, multiScale: false, amp: 'off', lossScale: 0 },
    hyp: hyp as unknown as Record<string, number>,
    loss: {
      ...{ box: hyp.box, cls: (hyp.cls * 5) / 80, obj: hyp.obj * (imgsz / 640) ** 2 },
      ...{ cls_pw: hyp.cls_pw, obj_pw: hyp.obj_pw, anchor_t: hyp.anchor_t, fl_gamma: hyp.fl_gamma },
      label_smoothing: 0,
    },
    ...over,
  };
}

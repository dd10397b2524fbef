/**
 * Training benchmark (not a test): ms per training step and images/s for --freeze 0, 10 and 24,
 * peak RSS, the machine's matmul GFLOP/s and each step's achieved GFLOP/s as a fraction of it,
 * and the data loader's images/s per worker. Every configuration runs in its own process (peak
 * memory is per process); ratios are against --freeze 0 of the same run.
 *
 * Each configuration also gets detect latency (batch 1) with and without Conv+BN fusion, and the
 * per-phase step times (loader wait, forward + loss, backward, optimizer).
 *
 *   node dist-test/scripts/bench.js [--cfg yolov5n] [--img 256] [--batch 16] [--steps 12] [--out bench/results-cpu.json]
 *   node dist-test/scripts/bench.js --matrix   # yolov5n/s × 320/640 × batch 8/16 → bench/results-cpu-matrix.json
 *   options: --freezes 0,10,24  --channels-last 1|0  --fused-bn 1|0  --detect-runs 5 (0: no detect latency)
 *            --repeat 3 (rounds per configuration, interleaved; the median is reported; matrix: 1)
 *            --nproc N: each configuration as N data-parallel ranks on loopback (Gloo), the threads
 *            split among them, the batch global; adds the gradient bytes each step all-reduced
 *            (→ bench/results-cpu-nproc{N}.json)
 *            --amp 0|1|0,1 (mixed precision: bf16 on the CPU, fp16 with loss scaling on CUDA; a list
 *            runs each beside the other, ratios against the first)  --device cpu|0  --workers N
 *            --cudnn-benchmark 1|0 (CUDA: default 1)
 *            --torch-baseline 1 (also time scripts/torch-step.py, our PyTorch-eager fp32 step, in
 *            each round; --python python3)  --reference DIR (also time the YOLOv5 reference's own
 *            step, scripts/reference-step.py on a v7.0 checkout at DIR, in each round)
 *            --profile 1: one more run of each row under LibTorch's profiler (YOLO5_PROFILE): per layer,
 *            forward and backward ms and their rate against the matmul rate; the top operators
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../lib/model/load';
import {
  native,
  preferSpinningThreads,
  type NativeAmp,
  type NativeBatchProgress,
  type NativeStepTimes,
} from '../lib/native/addon';
import { parseDevice } from '../lib/native/device';
import { TRAIN_DEFAULTS } from '../lib/options';
import { readHyp } from '../lib/config/hyp';
import { ensureSyntheticDataset } from '../lib/data/synthetic';
import { readDataConfig } from '../lib/config/data';
import { loadSplit, toNativeSamples } from '../lib/data/split';
import { describeMachine } from './machine';
import { distributedFromEnv } from '../lib/train/dist';
import { freePort } from '../lib/train/launch';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
}

interface ChildResult {
  freeze: number;
  /** The precision the step ran in ('off': fp32). */
  amp: NativeAmp;
  device: string;
  /** CUDA: torch.cuda.max_memory_allocated over the run, in MB. */
  cudaPeakMB?: number;
  msPerStep: number;
  cpuMsPerStep: number;
  imagesPerSecond: number;
  peakRssMB: number;
  trainable: number;
  parameters: number;
  gflops640: number;
  /** GFLOP of one training step of this configuration (see stepGflop). */
  stepGflop: number;
  /** Each layer's forward GFLOP at this size and batch (model.{i}). */
  layerGflop: number[];
  /** ms/step of every repeat (the row is the median one). */
  repeatsMsPerStep?: number[];
  loaderImagesPerSecondPerWorker?: number;
  /** Mean ms per step in each phase: loader wait, forward + loss, backward, optimizer + EMA. */
  phasesMs: NativeStepTimes;
  /** --nproc: ranks, threads each, and the bytes the last step's gradient all-reduce sent. */
  nproc?: number;
  threadsPerRank?: number;
  gradientBytesPerStep?: number;
}

/**
 * GFLOP of one training step: frozen layers (0…freeze−1) run forward only; trainable ones about
 * three forward passes (forward, and backward for inputs and for weights).
 */
function stepGflop(layerGflops640: number[], freeze: number, imgsz: number, batch: number): number {
  const scale = (imgsz / 640) ** 2 * batch;
  return layerGflops640.reduce((s, g, i) => s + (i < freeze ? 1 : 3) * g, 0) * scale;
}

/** One configuration: a trainer on the built-in data, `steps` measured batches after 2 warm-up ones. */
/** The environment before this process loaded the addon (which sets OpenMP's waiting): baselines run in it. */
const userEnv = { ...process.env };

async function child(): Promise<void> {
  // Each row measures what `yolo5 train` runs with (lib/cli/index.ts).
  preferSpinningThreads();
  const cfg = arg('cfg', 'yolov5n');
  const imgsz = Number(arg('img', '256'));
  const batch = Number(arg('batch', '16'));
  const steps = Number(arg('steps', '12'));
  const freeze = Number(arg('freeze', '0'));
  const device = parseDevice(arg('device', 'cpu'));
  const amp: NativeAmp = arg('amp', '0') !== '1' ? 'off' : device === 'cpu' ? 'bf16' : 'fp16';
  native().fusedBatchNorm(arg('fused-bn', '1') === '1');
  const dist = distributedFromEnv();
  if (dist) native().setThreads(Number(arg('threads', '1')));
  if (device !== 'cpu') native().cudnnBenchmark(arg('cudnn-benchmark', '1') === '1');
  const data = readDataConfig(await ensureSyntheticDataset());
  // With N ranks each gets 1/N of these: the same steps + 2 batches of batch / N images.
  const items = (await loadSplit(data, 'train', () => {})).slice(0, batch * (steps + 2));
  const model = await loadModel({ cfg, nc: data.nc, device });
  if (freeze > 0) model.freeze(freeze);
  const info = model.info();
  const hyp = readHyp(undefined);
  const group = dist ? new (native().NativeProcessGroup)() : undefined;
  if (dist && group) {
    await group.join({ ...dist, backend: 'gloo' });
    await group.broadcastModel(model.nativeHandle());
  }
  const trainer = new (native().NativeTrainer)(
    model.nativeHandle(),
    dist && dist.rank > 0 ? null : (await model.clone()).nativeHandle(),
    toNativeSamples(items),
    {
      imgsz,
      batch,
      stride: 32,
      augment: true,
      rect: false,
      cache: true,
      workers: Number(arg('workers', String(Math.max(1, Math.min(2, os.availableParallelism()))))),
      seed: 0,
      epochs: 100,
      nbs: 64,
      optimizer: 'SGD',
      cosLr: false,
      freezeBn: false,
      channelsLast: arg('channels-last', '1') === '1',
      multiScale: false,
      amp,
      lossScale: amp === 'fp16' ? TRAIN_DEFAULTS.lossScale : 0,
      hyp: hyp as unknown as Record<string, number>,
      ...(group ? { distributed: { group, syncBn: false } } : {}),
      loss: {
        box: hyp.box,
        cls: (hyp.cls * data.nc) / 80,
        obj: hyp.obj * (imgsz / 640) ** 2,
        cls_pw: 1,
        obj_pw: 1,
        anchor_t: 4,
        fl_gamma: 0,
        label_smoothing: 0,
      },
    },
  );
  const progress: NativeBatchProgress[] = [];
  const cpu: NodeJS.CpuUsage[] = [];
  await trainer.runEpoch(0, true, (p) => {
    progress.push(p);
    cpu.push(process.cpuUsage());
  });
  // Process CPU time per measured step (all threads): less sensitive to other load than wall time.
  const c0 = cpu[1]!;
  const c1 = cpu[cpu.length - 1]!;
  const cpuMsPerStep = (c1.user + c1.system - c0.user - c0.system) / 1000 / (cpu.length - 2);
  const ends = progress.map((p) => p.seconds);
  const per = ends.slice(2).map((t, i) => t - ends[i + 1]!);
  const ms = median(per) * 1000;
  // Mean ms per measured step in each phase (cumulative times after the 2 warm-up steps).
  const first = progress[1]!.times;
  const last = progress[progress.length - 1]!.times;
  const n = progress.length - 2;
  const phase = (k: keyof NativeStepTimes): number => ((last[k] - first[k]) * 1000) / n;
  const out: ChildResult = {
    freeze,
    amp,
    device,
    ...(device === 'cpu'
      ? {}
      : { cudaPeakMB: native().cudaMemory(Number(device.slice(5))).peak / 2 ** 20 }),
    msPerStep: ms,
    cpuMsPerStep,
    imagesPerSecond: (batch * 1000) / ms,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
    trainable: info.gradients,
    parameters: info.parameters,
    gflops640: info.gflops,
    stepGflop: stepGflop(info.layerGflops, freeze, imgsz, batch),
    layerGflop: info.layerGflops.map((g) => g * (imgsz / 640) ** 2 * batch),
    phasesMs: {
      data: phase('data'),
      forward: phase('forward'),
      backward: phase('backward'),
      optimizer: phase('optimizer'),
    },
  };
  if (dist) {
    out.nproc = dist.worldSize;
    out.threadsPerRank = native().getThreads();
    out.gradientBytesPerStep = trainer.distributedInfo()?.lastStepBytes ?? 0;
  }
  if (freeze === 0) {
    // The loader alone: one worker building mosaic samples back to back (images cached).
    const t = performance.now();
    const n = 32;
    for (let i = 0; i < n; i++) await trainer.sample(i % items.length, 1, true);
    out.loaderImagesPerSecondPerWorker = (n * 1000) / (performance.now() - t);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

interface DetectLatency {
  unfusedMs: number;
  fusedMs: number;
  ratio: number;
}

interface ConfigResult {
  cfg: string;
  imgsz: number;
  batch: number;
  rows: ChildResult[];
  detect?: DetectLatency;
  /** --torch-baseline 1: scripts/torch-step.py's fp32 step (PyTorch eager), interleaved. */
  pytorch?: TorchRow[];
  /** --reference DIR: the YOLOv5 reference's fp32 step (scripts/reference-step.py), interleaved. */
  reference?: TorchRow[];
  /** --profile 1: one more run of each row under LibTorch's profiler (binding/train/profile.h). */
  profiles?: StepProfile[];
}

/** What YOLO5_PROFILE writes (per step), with the row it profiled. */
interface StepProfile {
  freeze: number;
  amp: NativeAmp;
  layerGflop: number[];
  steps: number;
  phases: Record<string, number>;
  layers: { layer: number | 'loss'; forwardMs: number; backwardMs: number }[];
  unmappedBackwardMs: number;
  ops: { phase: string; name: string; ms: number; calls: number }[];
}

interface TorchRow {
  impl: string;
  torch: string;
  freeze: number;
  msPerStep: number;
  peakRssMB: number;
  trainable: number;
  repeatsMsPerStep?: number[];
}

/** The synthetic set's class count (the baseline builds its Detect layer for it). */
let syntheticNc = 5;

/** A Python fp32 step timed beside yolo5's: our PyTorch-eager one, or the real reference's. */
interface Baseline {
  key: 'pytorch' | 'reference';
  label: string;
  script: string;
  extra: string[];
}

/** --torch-baseline 1: scripts/torch-step.py; --reference DIR: scripts/reference-step.py on DIR. */
function baselines(): Baseline[] {
  const scripts = path.join(__dirname, '..', '..', 'scripts');
  const out: Baseline[] = [];
  if (arg('torch-baseline', '0') === '1')
    out.push({
      key: 'pytorch',
      label: 'PyTorch eager (scripts/torch-step.py)',
      script: path.join(scripts, 'torch-step.py'),
      extra: [],
    });
  const ref = arg('reference', '');
  if (ref)
    out.push({
      key: 'reference',
      label: `the YOLOv5 reference (scripts/reference-step.py on ${ref})`,
      script: path.join(scripts, 'reference-step.py'),
      extra: ['--yolov5', path.resolve(ref)],
    });
  return out;
}

/** One freeze level of a baseline in its own Python process (synthetic batches). */
function runBaseline(
  b: Baseline,
  cfg: string,
  imgsz: number,
  batch: number,
  steps: number,
  freeze: number,
): TorchRow {
  const yaml = path.join(__dirname, '..', '..', 'models', `${cfg}.yaml`);
  const args = [b.script, ...b.extra, '--cfg', yaml, '--img', String(imgsz)];
  args.push('--batch', String(batch), '--steps', String(steps), '--freezes', String(freeze));
  args.push('--nc', String(syntheticNc), '--threads', String(native().getThreads()));
  // As a user would run it: not with the OpenMP settings this process's addon added.
  const r = spawnSync(arg('python', 'python3'), args, { encoding: 'utf8', env: userEnv });
  if (r.status !== 0)
    throw new Error(`${path.basename(b.script)} (freeze ${freeze}) failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as TorchRow;
}

/**
 * --freeze 0/10/24 training steps of one configuration (each --amp mode given), each in its own
 * process, `repeat` rounds interleaved (0, 10, 24, 0, 10, 24, …) so that a busy moment of a shared
 * machine does not land on one configuration only; each row is the repeat with the median ms/step.
 */
async function runTraining(
  cfg: string,
  imgsz: number,
  batch: number,
  steps: number,
  freezes: number[],
  repeat: number,
  nproc: number,
): Promise<ConfigResult> {
  const amps = arg('amp', '0').split(',');
  const keys = amps.flatMap((amp) => freezes.map((freeze) => ({ amp, freeze })));
  const runs = new Map<string, ChildResult[]>(keys.map((k) => [`${k.amp}/${k.freeze}`, []]));
  const passed = ['channels-last', 'fused-bn', 'device', 'workers', 'cudnn-benchmark'];
  // One row's child: this configuration, and the options given to the benchmark that it obeys.
  const childArgs = (amp: string, freeze: number): string[] => {
    const args = ['--child', '--cfg', cfg, '--img', String(imgsz), '--batch', String(batch)];
    args.push('--steps', String(steps), '--freeze', String(freeze), '--amp', amp);
    for (const name of passed) {
      const i = process.argv.indexOf(`--${name}`);
      if (i >= 0) args.push(`--${name}`, process.argv[i + 1]!);
    }
    return args;
  };
  const bases = baselines();
  const baseRuns = bases.map(() => new Map<number, TorchRow[]>(freezes.map((f) => [f, []])));
  for (let round = 0; round < repeat; round++) {
    for (const { amp, freeze } of keys) {
      const args = childArgs(amp, freeze);
      const r =
        nproc > 1
          ? await runRanks(args, nproc)
          : spawnSync(process.execPath, [__filename, ...args], { encoding: 'utf8', env: userEnv });
      if (r.status !== 0) {
        throw new Error(
          `bench child (${cfg} ${imgsz} b${batch} freeze ${freeze} amp ${amp}) failed:\n${r.stderr}`,
        );
      }
      const row = JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
      runs.get(`${amp}/${freeze}`)!.push(row);
    }
    bases.forEach((b, i) => {
      for (const f of freezes)
        baseRuns[i]!.get(f)!.push(runBaseline(b, cfg, imgsz, batch, steps, f));
    });
  }
  const profiles: StepProfile[] = [];
  if (arg('profile', '0') === '1') {
    // Separate runs: the profiler's own overhead stays out of the timed rows.
    for (const { amp, freeze } of keys) {
      const file = path.join(os.tmpdir(), `yolo5-profile-${process.pid}-${amp}-${freeze}.json`);
      const r = spawnSync(process.execPath, [__filename, ...childArgs(amp, freeze)], {
        encoding: 'utf8',
        env: { ...userEnv, YOLO5_PROFILE: file },
      });
      if (r.status !== 0 || !fs.existsSync(file))
        throw new Error(`profile run (freeze ${freeze} amp ${amp}) wrote no profile:\n${r.stderr}`);
      const row = JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
      const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Omit<StepProfile, 'freeze' | 'amp'>;
      fs.rmSync(file);
      profiles.push({ ...p, freeze, amp: row.amp, layerGflop: row.layerGflop });
    }
  }
  const rows = [...runs.values()].map((each) => {
    const all = [...each].sort((a, b) => a.msPerStep - b.msPerStep);
    const row = all[Math.floor((all.length - 1) / 2)]!;
    return { ...row, repeatsMsPerStep: each.map((r) => r.msPerStep) };
  });
  const medians = (m: Map<number, TorchRow[]>): TorchRow[] =>
    [...m.values()].map((each) => {
      const row = [...each].sort((a, b) => a.msPerStep - b.msPerStep)[(each.length - 1) >> 1]!;
      return { ...row, repeatsMsPerStep: each.map((r) => r.msPerStep) };
    });
  const result: ConfigResult = { cfg, imgsz, batch, rows };
  bases.forEach((b, i) => (result[b.key] = medians(baseRuns[i]!)));
  if (profiles.length) result.profiles = profiles;
  return result;
}

/** One configuration as `nproc` ranks (torchrun's variables, a free loopback port); rank 0's result. */
async function runRanks(
  args: string[],
  nproc: number,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const port = await freePort();
  const threads = Math.max(1, Math.floor(os.availableParallelism() / nproc));
  const ranks = Array.from({ length: nproc }, (_, rank) => {
    const env = {
      ...userEnv,
      WORLD_SIZE: String(nproc),
      RANK: String(rank),
      LOCAL_RANK: String(rank),
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
    };
    const child = spawn(process.execPath, [__filename, ...args, '--threads', String(threads)], {
      env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
      child.on('close', (status) => resolve({ status, stdout, stderr })),
    );
  });
  const results = await Promise.all(ranks);
  const bad = results.find((r) => r.status !== 0);
  return bad ?? results[0]!;
}

/** Detect latency (batch 1) with and without Conv+BN fusion, from scripts/bench-detect. */
function runDetect(cfg: string, imgsz: number, runs: number): DetectLatency {
  const tmp = path.join(os.tmpdir(), `yolo5-bench-detect-${process.pid}.json`);
  const script = path.join(__dirname, 'bench-detect.js');
  const args = [script, '--cfg', cfg, '--img', String(imgsz), '--runs', String(runs)];
  const r = spawnSync(process.execPath, [...args, '--out', tmp], {
    encoding: 'utf8',
    env: userEnv,
  });
  if (r.status !== 0) throw new Error(`bench-detect (${cfg} ${imgsz}) failed:\n${r.stderr}`);
  const j = JSON.parse(fs.readFileSync(tmp, 'utf8')) as { rows: { msPerImage: number }[] };
  fs.rmSync(tmp, { force: true });
  const [unfused, fused] = [j.rows[0]!.msPerImage, j.rows[1]!.msPerImage];
  return { unfusedMs: unfused, fusedMs: fused, ratio: fused / unfused };
}

function printConfig(c: ConfigResult, matmul: number, threads: number): void {
  const base = c.rows[0]!;
  const ranks = c.rows[0]!.nproc;
  const how = ranks
    ? `${ranks} ranks × ${c.rows[0]!.threadsPerRank} threads, global batch`
    : `${threads} threads`;
  console.log(`\n### ${c.cfg} at ${c.imgsz} px, batch ${c.batch} (${how})\n`);
  console.log(
    '| freeze | amp | trainable params | ms/step | CPU ms/step | images/s | step ratio | peak RSS MB | RSS ratio | CUDA peak MB | achieved GFLOP/s | of matmul |',
  );
  console.log(
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of c.rows) {
    const achieved = r.stepGflop / (r.msPerStep / 1000);
    console.log(
      `| ${r.freeze} | ${r.amp} | ${r.trainable.toLocaleString('en-US')} | ${r.msPerStep.toFixed(0)} | ${r.cpuMsPerStep.toFixed(0)} | ${r.imagesPerSecond.toFixed(1)} | ${(r.msPerStep / base.msPerStep).toFixed(2)} | ${r.peakRssMB.toFixed(0)} | ${(r.peakRssMB / base.peakRssMB).toFixed(2)} | ${r.cudaPeakMB?.toFixed(0) ?? '–'} | ${achieved.toFixed(1)} | ${((100 * achieved) / matmul).toFixed(0)}% |`,
    );
  }
  if (c.rows.some((r) => (r.repeatsMsPerStep?.length ?? 0) > 1)) {
    const each = c.rows.map(
      (r) =>
        `--freeze ${r.freeze} (${r.amp}): ${r.repeatsMsPerStep!.map((m) => m.toFixed(0)).join(', ')}`,
    );
    console.log(
      `\nms/step of each interleaved repeat (the rows are the medians): ${each.join('; ')}`,
    );
  }
  console.log('');
  const dist = c.rows[0]!.nproc !== undefined;
  console.log(
    `| freeze | amp | data wait ms | forward+loss ms | backward ms | optimizer+EMA ms |${dist ? ' gradient bytes/step |' : ''}`,
  );
  console.log(`| ---: | --- | ---: | ---: | ---: | ---: |${dist ? ' ---: |' : ''}`);
  for (const r of c.rows) {
    const p = r.phasesMs;
    const bytes = dist ? ` ${r.gradientBytesPerStep!.toLocaleString('en-US')} |` : '';
    console.log(
      `| ${r.freeze} | ${r.amp} | ${p.data.toFixed(1)} | ${p.forward.toFixed(1)} | ${p.backward.toFixed(1)} | ${p.optimizer.toFixed(1)} |${bytes}`,
    );
  }
  if (base.loaderImagesPerSecondPerWorker !== undefined) {
    const step = base.imagesPerSecond;
    console.log(
      `\nloader: ${base.loaderImagesPerSecondPerWorker.toFixed(1)} images/s per worker (mosaic, ${c.imgsz} px) vs ${step.toFixed(1)} images/s consumed by the --freeze 0 step`,
    );
  }
  for (const b of baselines()) if (c[b.key]) printBaseline(b.label, c[b.key]!, c.rows);
  for (const p of c.profiles ?? []) printProfile(p, matmul);
  if (c.detect) {
    const d = c.detect;
    console.log(
      `detect (batch 1, 640x480 input): ${d.unfusedMs.toFixed(1)} ms/image unfused, ${d.fusedMs.toFixed(1)} ms fused (${d.ratio.toFixed(2)}x)`,
    );
  }
}

/**
 * One profiled row: each layer's forward and backward ms and rate against the fp32 matmul rate,
 * then the operators that took the most. Backward GFLOP: twice the forward (gradients for the
 * input and the weights) for trainable layers, once for the first (its input needs none).
 */
function printProfile(p: StepProfile, matmul: number): void {
  const total = Object.values(p.phases).reduce((a, b) => a + b, 0);
  const phases = Object.entries(p.phases)
    .map(([k, v]) => `${k.replace('yolo5::', '')} ${v.toFixed(1)}`)
    .join(', ');
  console.log(
    `\nStep profile, --freeze ${p.freeze}, amp ${p.amp} (LibTorch's profiler over ${p.steps} steps, its overhead included): ${total.toFixed(1)} ms/step (${phases}); backward not traced to a layer: ${p.unmappedBackwardMs.toFixed(1)} ms\n`,
  );
  console.log(
    '| layer | fwd GFLOP | fwd ms | fwd GFLOP/s | of matmul | bwd ms | bwd GFLOP/s | of matmul |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const pct = (rate: number): string => `${((100 * rate) / matmul).toFixed(0)}%`;
  for (const l of p.layers) {
    if (l.layer === 'loss') {
      console.log(
        `| loss | – | ${l.forwardMs.toFixed(1)} | – | – | ${l.backwardMs.toFixed(1)} | – | – |`,
      );
      continue;
    }
    const g = p.layerGflop[l.layer] ?? 0;
    const gb = l.layer < p.freeze ? 0 : (l.layer === p.freeze ? 1 : 2) * g;
    const fr = g / (l.forwardMs / 1000);
    const br = l.backwardMs > 0.05 && gb > 0 ? gb / (l.backwardMs / 1000) : 0;
    console.log(
      `| ${l.layer} | ${g.toFixed(2)} | ${l.forwardMs.toFixed(1)} | ${fr.toFixed(0)} | ${pct(fr)} | ${l.backwardMs.toFixed(1)} | ${br ? br.toFixed(0) : '–'} | ${br ? pct(br) : '–'} |`,
    );
  }
  console.log('\n| phase | operator | calls/step | ms/step | of step |');
  console.log('| --- | --- | ---: | ---: | ---: |');
  for (const o of [...p.ops].sort((a, b) => b.ms - a.ms).slice(0, 12))
    console.log(
      `| ${o.phase.replace('yolo5::', '')} | ${o.name.replace(/^torch::autograd::CppNode<(.*)>$/, '$1')} | ${o.calls.toFixed(0)} | ${o.ms.toFixed(1)} | ${((100 * o.ms) / total).toFixed(0)}% |`,
    );
}

/** yolo5's rows (each amp mode) beside a Python fp32 baseline: speedup = its ms / yolo5's ms. */
function printBaseline(label: string, base: TorchRow[], rows: ChildResult[]): void {
  console.log(`\n${label}, torch ${base[0]!.torch}, fp32, synthetic batches:\n`);
  console.log(
    '| freeze | yolo5 amp | yolo5 ms/step | baseline fp32 ms/step | speedup | yolo5 RSS MB | baseline RSS MB |',
  );
  console.log('| ---: | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const t of base) {
    for (const y of rows.filter((r) => r.freeze === t.freeze)) {
      console.log(
        `| ${t.freeze} | ${y.amp} | ${y.msPerStep.toFixed(0)} | ${t.msPerStep.toFixed(0)} | ${(t.msPerStep / y.msPerStep).toFixed(2)} | ${y.peakRssMB.toFixed(0)} | ${t.peakRssMB.toFixed(0)} |`,
      );
    }
  }
  const each = base.map(
    (t) => `--freeze ${t.freeze}: ${t.repeatsMsPerStep!.map((m) => m.toFixed(0)).join(', ')}`,
  );
  console.log(`\nbaseline ms/step of each repeat: ${each.join('; ')}`);
}

async function main(): Promise<void> {
  const matrix = process.argv.includes('--matrix');
  const nproc = Number(arg('nproc', '1'));
  const out = arg(
    'out',
    path.join(
      'bench',
      matrix
        ? 'results-cpu-matrix.json'
        : nproc > 1
          ? `results-cpu-nproc${nproc}.json`
          : 'results-cpu.json',
    ),
  );
  const freezes = arg('freezes', '0,10,24').split(',').map(Number);
  const detectRuns = Number(arg('detect-runs', '5'));
  syntheticNc = readDataConfig(await ensureSyntheticDataset()).nc;
  const addon = native();
  // The best of a few tries: on a shared machine one try can land on a busy moment.
  let matmul = 0;
  for (let i = 0; i < 3; i++)
    matmul = Math.max(matmul, addon.matmulGflops(1024, 10), addon.matmulGflops(2048, 3));
  const machine = {
    ...describeMachine(),
    matmulGflops: matmul,
    loadAverageAtStart: os.loadavg(),
  };
  console.log(
    `training step benchmark: ${machine.threads} threads, ${machine.cpu} (${machine.cores} cores); matmul ${matmul.toFixed(1)} GFLOP/s; load average ${machine.loadAverageAtStart.map((l) => l.toFixed(1)).join(' ')}`,
  );
  const plan: { cfg: string; imgsz: number; batch: number; steps: number; repeat: number }[] = [];
  const repeat = Number(arg('repeat', matrix ? '1' : '3'));
  if (matrix) {
    // The matrix; fewer measured steps where one step takes seconds.
    for (const cfg of ['yolov5n', 'yolov5s'])
      for (const imgsz of [320, 640])
        for (const batch of [8, 16]) {
          const heavy = (cfg === 'yolov5s' ? 4 : 1) * (imgsz / 320) ** 2 * (batch / 8);
          plan.push({ cfg, imgsz, batch, steps: heavy >= 8 ? 4 : heavy >= 4 ? 6 : 10, repeat });
        }
  } else {
    plan.push({
      cfg: arg('cfg', 'yolov5n'),
      imgsz: Number(arg('img', '256')),
      batch: Number(arg('batch', '16')),
      steps: Number(arg('steps', '12')),
      repeat,
    });
  }
  const configs: ConfigResult[] = [];
  const detected = new Map<string, DetectLatency>();
  for (const p of plan) {
    const c = await runTraining(p.cfg, p.imgsz, p.batch, p.steps, freezes, p.repeat, nproc);
    if (detectRuns > 0) {
      const key = `${p.cfg}@${p.imgsz}`;
      if (!detected.has(key)) detected.set(key, runDetect(p.cfg, p.imgsz, detectRuns));
      c.detect = detected.get(key)!;
    }
    printConfig(c, matmul, machine.threads);
    configs.push(c);
  }
  const loadAverageAtEnd = os.loadavg();
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const result = matrix
    ? { date: new Date().toISOString(), machine, loadAverageAtEnd, configs }
    : { date: new Date().toISOString(), machine, loadAverageAtEnd, ...configs[0]! };
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwritten ${out}`);
}

(process.argv.includes('--child') ? child() : main()).catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});

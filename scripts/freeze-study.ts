/**
 * The seed's experiment at a size this machine can run (a script, not a test): fine-tune the
 * bundled models/yolov5n-shapes.pt (pretrained by yolo5 on SHAPES_PRETRAIN: 24 shape classes in
 * many looks) on the built-in target set SHAPES_B (five shapes the pretraining never saw) with
 * --freeze 0, 10 and 24 — same epochs, seed and settings — and compare mAP50, mAP50-95, training
 * time, time per epoch, peak memory and trainable parameters. Every training runs in its own
 * process, so peak RSS is per run.
 *
 *   node dist-test/scripts/freeze-study.js [--epochs 20] [--cfg yolov5n] [--img 256] [--batch 16]
 *        [--seeds 0] [--freezes 0,10,24] [--amps auto] [--pretrained W.pt]
 *        [--runs runs/freeze-study] [--out docs/freeze-study/results]
 *
 * --seeds and --amps take lists (e.g. --seeds 0,1 --amps off,bf16): every freeze level trains once
 * per seed and AMP mode, and the table gives each mode's mean and the spread between seeds, the
 * evidence for what `--amp auto` should mean on a CPU (README "Mixed precision").
 *
 * Writes <out>.json (everything, per epoch), <out>.md (the table and the machine) and <out>.png
 * (mAP50-95 and mAP50 per epoch of each fine-tuning run). --pretrained replaces the bundled model.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bundledModelPath } from '../lib/data/builtin';
import { SHAPES_B, SHAPES_PRETRAIN, ensureSyntheticDataset } from '../lib/data/synthetic';
import { train, type EpochRecord, type TrainOptions } from '../lib/train/train';
import { lineChartPng, type Series } from './chart';
import { describeMachine } from './machine';
import type { AmpMode } from '../lib/options';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

interface RunSummary {
  name: string;
  freeze: number | null;
  amp: string;
  seed: number;
  epochs: {
    epoch: number;
    mAP50: number;
    mAP50_95: number;
    precision: number;
    recall: number;
    seconds: number;
    loss: number;
  }[];
  final: { precision: number; recall: number; mAP50: number; mAP50_95: number };
  best: string | null;
  saveDir: string;
  trainableParameters: number;
  frozenTensors: number;
  /** Sum of the epochs' training times (loader + steps, without validation). */
  trainSeconds: number;
  /** The whole run: set-up, every epoch with its validation, checkpoints, the final validation. */
  wallSeconds: number;
  peakRssMB: number;
}

/** One training in this (child) process; prints its summary as the last line. */
async function child(): Promise<void> {
  const opts = JSON.parse(arg('child', '{}')) as TrainOptions & { label: string };
  const t0 = performance.now();
  const run = train({ ...opts, log: (l) => process.stderr.write(`  ${l}\n`) });
  run.on('epoch', (e: EpochRecord) =>
    process.stderr.write(
      `  ${opts.label} epoch ${e.epoch}: mAP50 ${e.mAP50.toFixed(4)} mAP50-95 ${e.mAP50_95.toFixed(4)} (${e.seconds.toFixed(1)} s)\n`,
    ),
  );
  const r = await run;
  if (r.status !== 'completed') throw new Error(`${opts.label}: training ended ${r.status}`);
  const m = r.final?.metrics ?? r.epochs[r.epochs.length - 1]!;
  const summary: RunSummary = {
    name: opts.label,
    freeze: typeof opts.freeze === 'number' ? opts.freeze : null,
    amp: r.amp,
    seed: opts.seed ?? 0,
    epochs: r.epochs.map((e) => ({
      epoch: e.epoch,
      mAP50: e.mAP50,
      mAP50_95: e.mAP50_95,
      precision: e.precision,
      recall: e.recall,
      seconds: e.seconds,
      loss: e.box + e.obj + e.cls,
    })),
    final: { precision: m.precision, recall: m.recall, mAP50: m.mAP50, mAP50_95: m.mAP50_95 },
    best: r.best ?? null,
    saveDir: r.saveDir,
    trainableParameters: r.trainableParameters,
    frozenTensors: r.frozen.length,
    trainSeconds: r.epochs.reduce((s, e) => s + e.seconds, 0),
    wallSeconds: (performance.now() - t0) / 1000,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

function runChild(opts: TrainOptions & { label: string }): RunSummary {
  console.log(`\n## ${opts.label}`);
  const r = spawnSync(process.execPath, [__filename, '--child', JSON.stringify(opts)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`${opts.label} failed (exit ${r.status})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as RunSummary;
}

const COLORS: [number, number, number][] = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
];

/** Each freeze level and precision over its seeds: mean, and the spread (max − min) between seeds. */
function spreadTable(runs: RunSummary[]): string {
  const groups = new Map<string, RunSummary[]>();
  for (const r of runs) {
    const key = `${r.freeze} | ${r.amp}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const stat = (xs: number[]): string => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    return `${mean.toFixed(3)} | ${(Math.max(...xs) - Math.min(...xs)).toFixed(3)}`;
  };
  const rows = [...groups].map(([key, g]) => {
    const perEpoch = g.map((r) => r.trainSeconds / r.epochs.length);
    return `| ${key} | ${g.length} | ${stat(g.map((r) => r.final.mAP50))} | ${stat(g.map((r) => r.final.mAP50_95))} | ${(perEpoch.reduce((a, b) => a + b, 0) / g.length).toFixed(1)} |`;
  });
  return [
    '| --freeze | amp | seeds | mAP50 mean | mAP50 spread | mAP50-95 mean | mAP50-95 spread | s/epoch mean |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

async function main(): Promise<void> {
  const epochs = Number(arg('epochs', '20'));
  const cfg = arg('cfg', 'yolov5n');
  const imgsz = Number(arg('img', '256'));
  const batch = Number(arg('batch', '16'));
  const seeds = arg('seeds', arg('seed', '0')).split(',').map(Number);
  const amps = arg('amps', 'auto').split(',') as AmpMode[];
  const freezes = arg('freezes', '0,10,24').split(',').map(Number);
  const runs = path.resolve(arg('runs', path.join('runs', 'freeze-study')));
  const out = path.resolve(arg('out', path.join('docs', 'freeze-study', 'results')));
  const dataB = await ensureSyntheticDataset(SHAPES_B);
  const machine = describeMachine();
  const common = { cfg, imgsz, batch, project: runs, existOk: false };
  const started = new Date().toISOString();
  const pretrained = arg('pretrained', bundledModelPath() ?? '');
  if (!pretrained)
    throw new Error('no bundled model (models/yolov5n-shapes.pt): pass --pretrained');
  const finetunes: RunSummary[] = [];
  const several = seeds.length > 1 || amps.length > 1;
  for (const freeze of freezes)
    for (const amp of amps)
      for (const seed of seeds) {
        const tag = several ? `, --amp ${amp}, seed ${seed}` : '';
        finetunes.push(
          runChild({
            ...common,
            label: `fine-tune on B, --freeze ${freeze}${tag}`,
            data: dataB,
            weights: pretrained,
            epochs,
            freeze,
            seed,
            amp,
            name: several ? `freeze${freeze}-${amp}-seed${seed}` : `freeze${freeze}`,
          }),
        );
      }

  const base = finetunes[0]!;
  const rows = finetunes.map((r) => {
    const perEpoch = r.trainSeconds / r.epochs.length;
    const basePerEpoch = base.trainSeconds / base.epochs.length;
    return (
      `| ${r.freeze} | ${r.amp} | ${r.seed} | ${r.trainableParameters.toLocaleString('en-US')} | ${r.final.mAP50.toFixed(3)} | ` +
      `${r.final.mAP50_95.toFixed(3)} | ${r.trainSeconds.toFixed(0)} | ${perEpoch.toFixed(1)} | ` +
      `${(perEpoch / basePerEpoch).toFixed(2)} | ${r.wallSeconds.toFixed(0)} | ${r.peakRssMB.toFixed(0)} | ` +
      `${(r.peakRssMB / base.peakRssMB).toFixed(2)} |`
    );
  });
  const table = [
    '| --freeze | amp | seed | trainable params | mAP50 | mAP50-95 | training s | s/epoch | epoch ratio | wall s | peak RSS MB | RSS ratio |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
  const md = [
    `Fine-tuning ${cfg} on data set B (${SHAPES_B.classes.join(', ')}; ${SHAPES_B.train} train / ${SHAPES_B.val} val images) for ${epochs} epochs from ${path.basename(pretrained)}` +
      ` (pretrained on ${SHAPES_PRETRAIN.classes.length} other shape classes)` +
      `; ${imgsz} px, batch ${batch}, seeds ${seeds.join(', ')}. mAP: the final validation of each run's best.pt on B's val set.`,
    '',
    table,
    '',
    ...(several ? [spreadTable(finetunes), ''] : []),
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGB} GB, ${machine.threads} LibTorch threads, LibTorch ${machine.libtorch}, CUDA ${machine.cuda.available ? 'yes' : 'no'}, Node ${machine.node}; ${started}.`,
  ].join('\n');
  console.log(`\n${md}`);

  const series: Series[] = [];
  finetunes.forEach((r, i) => {
    const color = COLORS[i % COLORS.length]!;
    series.push({
      label: `--freeze ${r.freeze}${several ? ` ${r.amp} s${r.seed}` : ''} mAP50-95`,
      points: r.epochs.map((e) => [e.epoch, e.mAP50_95]),
      color,
    });
    series.push({
      label: `--freeze ${r.freeze}${several ? ` ${r.amp} s${r.seed}` : ''} mAP50`,
      points: r.epochs.map((e) => [e.epoch, e.mAP50]),
      color: color.map((c) => Math.round(c + (255 - c) * 0.55)) as [number, number, number],
    });
  });
  const png = lineChartPng(series, {
    title: `Fine-tuning ${path.basename(pretrained)} on shapes B`,
    xLabel: 'epoch',
    yLabel: 'mAP on B val (EMA)',
  });
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(`${out}.png`, png);
  fs.writeFileSync(`${out}.md`, `${md}\n`);
  fs.writeFileSync(
    `${out}.json`,
    `${JSON.stringify({ date: started, machine, cfg, imgsz, batch, seeds, amps, epochs, pretrained, finetunes }, null, 2)}\n`,
  );
  console.log(`\nwritten ${out}.md, ${out}.json, ${out}.png`);
}

(process.argv.includes('--child') ? child() : main()).catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});

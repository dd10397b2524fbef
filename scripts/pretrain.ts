/**
 * Remakes the bundled pretrained model, models/yolov5n-shapes.pt: yolov5n trained from scratch
 * by yolo5 itself on the built-in pretraining set (SHAPES_PRETRAIN: 24 shape classes in many
 * looks), then the run's stripped best.pt (EMA weights in float16) copied into models/ with a
 * record of how it was made beside it (models/yolov5n-shapes.json).
 *
 *   node dist-test/scripts/pretrain.js [--epochs 30] [--img 256] [--batch 16] [--seed 0]
 *        [--threads N] [--train N --val N] [--runs runs/pretrain] [--name shapes]
 *        [--out models/yolov5n-shapes.pt] [--resume runs/pretrain/shapes/weights/last.pt]
 *        [--note "what else the record should say"]
 *
 * --train/--val take the first N images of each split (a dry run, in a data set of its own
 * name); the record then says so. Progress goes to stdout, one line per epoch.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SHAPES_PRETRAIN, ensureSyntheticDataset, type SyntheticSpec } from '../lib/data/synthetic';
import { train, type EpochRecord } from '../lib/train/train';
import { describeMachine } from './machine';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

async function main(): Promise<void> {
  const epochs = Number(arg('epochs', '30'));
  const imgsz = Number(arg('img', '256'));
  const batch = Number(arg('batch', '16'));
  const seed = Number(arg('seed', '0'));
  const threads = arg('threads', '');
  const out = path.resolve(arg('out', path.join('models', 'yolov5n-shapes.pt')));
  const trainN = Number(arg('train', String(SHAPES_PRETRAIN.train)));
  const valN = Number(arg('val', String(SHAPES_PRETRAIN.val)));
  const full = trainN === SHAPES_PRETRAIN.train && valN === SHAPES_PRETRAIN.val;
  const spec: SyntheticSpec = full
    ? SHAPES_PRETRAIN
    : {
        ...SHAPES_PRETRAIN,
        name: `${SHAPES_PRETRAIN.name}-${trainN}-${valN}`,
        train: trainN,
        val: valN,
      };
  const started = new Date();
  const t0 = performance.now();
  const data = await ensureSyntheticDataset(spec, undefined, (l) => console.log(l));
  const generateSeconds = (performance.now() - t0) / 1000;
  const resume = arg('resume', '');
  // --resume continues an interrupted run with its own options; only --epochs may change.
  const run = train({
    ...(resume ? { resume } : {}),
    data,
    cfg: 'yolov5n.yaml',
    imgsz,
    epochs,
    batch,
    seed,
    ...(threads ? { threads: Number(threads) } : {}),
    project: path.resolve(arg('runs', path.join('runs', 'pretrain'))),
    name: arg('name', 'shapes'),
    log: (l) => console.log(l),
  });
  run.on('epoch', (e: EpochRecord) =>
    console.log(
      `epoch ${e.epoch}/${epochs - 1}: loss ${(e.box + e.obj + e.cls).toFixed(4)} (box ${e.box.toFixed(4)} obj ${e.obj.toFixed(4)} cls ${e.cls.toFixed(4)}) ` +
        `P ${e.precision.toFixed(3)} R ${e.recall.toFixed(3)} mAP50 ${e.mAP50.toFixed(4)} mAP50-95 ${e.mAP50_95.toFixed(4)} ` +
        `${e.seconds.toFixed(0)} s, ${((performance.now() - t0) / 60000).toFixed(1)} min in all`,
    ),
  );
  const r = await run;
  if (r.status !== 'completed' && r.status !== 'early-stopped')
    throw new Error(`pretraining ended ${r.status}; ${out} left as it was`);
  if (!r.best) throw new Error(`pretraining saved no best.pt; ${out} left as it was`);
  const bytes = fs.readFileSync(r.best);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, bytes);
  const m = r.final?.metrics ?? r.epochs[r.epochs.length - 1]!;
  const record = {
    file: path.basename(out),
    sha256: createHash('sha256').update(bytes).digest('hex'),
    bytes: bytes.length,
    made: 'by yolo5 itself: yolov5n from scratch (no other weights) on the built-in pretraining set',
    command: `node dist-test/scripts/pretrain.js ${process.argv.slice(2).join(' ')}`.trim(),
    ...(arg('note', '') ? { note: arg('note', '') } : {}),
    data: { ...spec, dryRun: !full },
    model: 'yolov5n.yaml',
    imgsz,
    epochs,
    epochsRun: r.epochs.length,
    batch,
    seed,
    hyp: 'models/hyps/hyp.scratch-low.yaml',
    status: r.status,
    final: {
      of: "best.pt on the pretraining set's val split",
      precision: m.precision,
      recall: m.recall,
      mAP50: m.mAP50,
      mAP50_95: m.mAP50_95,
    },
    perEpoch: r.epochs.map((e) => ({
      epoch: e.epoch,
      loss: Number((e.box + e.obj + e.cls).toFixed(5)),
      mAP50: Number(e.mAP50.toFixed(5)),
      mAP50_95: Number(e.mAP50_95.toFixed(5)),
      seconds: Number(e.seconds.toFixed(1)),
    })),
    generateSeconds: Number(generateSeconds.toFixed(1)),
    wallMinutes: Number(((performance.now() - t0) / 60000).toFixed(1)),
    started: started.toISOString(),
    machine: describeMachine(),
  };
  const recordFile = out.replace(/\.pt$/, '.json');
  fs.writeFileSync(recordFile, `${JSON.stringify(record, null, 2)}\n`);
  console.log(
    `Wrote ${out} (${(bytes.length / 1e6).toFixed(2)} MB; mAP50 ${m.mAP50.toFixed(4)}, mAP50-95 ${m.mAP50_95.toFixed(4)}) and ${recordFile}`,
  );
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});

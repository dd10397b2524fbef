/**
 * Detect latency benchmark (not a test): ms per image at 640 px for yolov5s on this machine,
 * batch 1, with and without Conv+BN fusion; the unfused run is the baseline of the ratios.
 *
 *   node dist-test/scripts/bench-detect.js [--cfg yolov5s] [--img 640] [--runs 10] [--out bench/detect-cpu.json]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { detectImages } from '../lib/predict/detect';
import { loadModel } from '../lib/model/load';
import { preferSpinningThreads } from '../lib/native/addon';
import { describeMachine } from './machine';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  preferSpinningThreads(); // as `yolo5 detect` runs
  const cfg = arg('cfg', 'yolov5s');
  const imgsz = Number(arg('img', '640'));
  const runs = Number(arg('runs', '10'));
  const out = arg('out', path.join('bench', 'detect-cpu.json'));
  // A 640x480 photo-like input: smooth gradients plus noise (the model is untrained; NMS sees
  // its usual number of low-confidence candidates at conf 0.25).
  const w = 640;
  const h = 480;
  const rgb = new Uint8Array(w * h * 3);
  let seed = 1;
  for (let i = 0; i < rgb.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    rgb[i] = ((i / 3) % w) / 3 + (seed >>> 27);
  }
  const image = { data: rgb, width: w, height: h };
  const rows: Record<string, number | string>[] = [];
  for (const fused of [false, true]) {
    const model = await loadModel({ cfg });
    if (fused) await model.fuse();
    await detectImages(image, { model, imgsz }); // warm-up
    const total: number[] = [];
    const inference: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t = performance.now();
      const o = await detectImages(image, { model, imgsz });
      total.push(performance.now() - t);
      inference.push(o.speed.inference);
    }
    rows.push({
      variant: fused ? 'fused' : 'unfused',
      msPerImage: median(total),
      inferenceMs: median(inference),
    });
  }
  const base = rows[0]!.msPerImage as number;
  for (const r of rows) r.ratio = (r.msPerImage as number) / base;
  const machine = describeMachine();
  console.log(
    `detect latency: ${cfg} at ${imgsz} (640x480 input, batch 1), ${runs} runs, ${machine.threads} threads, ${machine.cpu}`,
  );
  console.log('| variant | ms/image | inference ms | ratio vs unfused |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const r of rows) {
    console.log(
      `| ${r.variant} | ${(r.msPerImage as number).toFixed(1)} | ${(r.inferenceMs as number).toFixed(1)} | ${(r.ratio as number).toFixed(2)} |`,
    );
  }
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    `${JSON.stringify({ date: new Date().toISOString(), cfg, imgsz, runs, machine, rows }, null, 2)}\n`,
  );
  console.log(`written ${out}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});

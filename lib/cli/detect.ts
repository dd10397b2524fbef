/** `yolo5 detect`: annotated images, YOLO txt labels, crops and a JSON summary in runs/detect/exp*. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { detectStream, type DetectResult } from '../predict/detect';
import { yoloTxtRows } from '../predict/labels';
import { native } from '../native/addon';
import { makeRunDir } from '../report/runs';
import type { AmpMode } from '../options';
import { ampOption, parseInteger, parseNumber } from './options';

interface DetectCliOptions {
  weights: string[];
  cfg?: string;
  source: string[];
  imgsz: number;
  conf: number;
  iou: number;
  maxDet: number;
  classes?: number[];
  agnosticNms?: boolean;
  saveTxt?: boolean;
  saveConf?: boolean;
  saveCrop?: boolean;
  nosave?: boolean;
  lineThickness: number;
  hideLabels?: boolean;
  hideConf?: boolean;
  project?: string;
  name?: string;
  existOk?: boolean;
  augment?: boolean;
  amp?: AmpMode;
  device?: string;
}

export function detectCommand(): Command {
  return new Command('detect')
    .description('detect objects in images; writes annotated copies, labels and a JSON summary')
    .requiredOption(
      '--weights <files...>',
      'checkpoint (.pt) to run; several form an ensemble (one NMS over all their boxes)',
    )
    .requiredOption('--source <paths...>', 'image file, folder or glob (several allowed)')
    .option('--cfg <yaml>', 'model yaml, for weights that are a plain state dict')
    .option('--img, --imgsz <n>', 'inference size (pixels)', parseInteger('--img', 32), 640)
    .option('--conf <x>', 'confidence threshold', parseNumber('--conf', 0, 1), 0.25)
    .option('--iou <x>', 'NMS IoU threshold', parseNumber('--iou', 0, 1), 0.45)
    .option('--max-det <n>', 'most detections per image', parseInteger('--max-det', 1), 1000)
    .option(
      '--classes <ids...>',
      'keep only these class ids',
      (v: string, prev: number[] | undefined) => [...(prev ?? []), parseInteger('--classes', 0)(v)],
    )
    .option('--agnostic-nms', 'one NMS across classes')
    .option('--save-txt', 'write YOLO labels (class cx cy w h) per image')
    .option('--save-conf', 'append the confidence to --save-txt rows')
    .option('--save-crop', 'write each detection as its own image')
    .option('--nosave', 'do not write annotated images')
    .option(
      '--line-thickness <n>',
      'box line width in pixels',
      parseInteger('--line-thickness', 1),
      3,
    )
    .option('--hide-labels', 'draw boxes without labels')
    .option('--hide-conf', 'draw labels without confidences')
    .option('--project <dir>', 'runs folder', 'runs/detect')
    .option('--name <name>', 'run name', 'exp')
    .option('--exist-ok', 'reuse an existing run folder')
    .option('--augment', 'test-time augmentation: scales 1, 0.83 (flipped), 0.67 before one NMS')
    .option('--device <d>', 'cpu (default), a CUDA device index such as 0, or cuda:N')
    .addOption(ampOption())
    .action(async (o: DetectCliOptions) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      const stream = await detectStream(o.source, {
        weights: o.weights,
        augment: o.augment === true,
        ...(o.cfg !== undefined ? { cfg: o.cfg } : {}),
        ...(o.device !== undefined ? { device: o.device } : {}),
        ...(o.amp !== undefined ? { amp: o.amp } : {}),
        imgsz: o.imgsz,
        conf: o.conf,
        iou: o.iou,
        maxDet: o.maxDet,
        ...(o.classes ? { classes: o.classes } : {}),
        agnosticNms: o.agnosticNms === true,
        log: out,
      });
      const dir = makeRunDir('detect', {
        ...(o.project ? { project: o.project } : {}),
        ...(o.name ? { name: o.name } : {}),
        existOk: o.existOk === true,
      });
      if (o.saveTxt) fs.mkdirSync(path.join(dir, 'labels'), { recursive: true });
      // Crop paths handed out but not written yet (an image's crops are written together).
      const claimed = new Set<string>();
      // results.json is written as the images finish, so no result is held beyond its image.
      const json = fs.openSync(path.join(dir, 'results.json'), 'w');
      fs.writeSync(json, '{\n  "results": [');
      const total = { preprocess: 0, inference: 0, nms: 0, images: 0 };
      for await (const r of stream) {
        const { index, total: n, speed: t, ...result } = r;
        fs.writeSync(
          json,
          `${index > 0 ? ',' : ''}\n    ${JSON.stringify(result, null, 2).replace(/\n/g, '\n    ')}`,
        );
        if (r.error) continue;
        total.preprocess += t.preprocess;
        total.inference += t.inference;
        total.nms += t.nms;
        total.images++;
        const ms = t.preprocess + t.inference + t.nms;
        const found = r.boxes.length ? `${summary(r, stream.model.names)}, ` : '(no detections), ';
        out(
          `image ${index + 1}/${n} ${r.source}: ${r.width}x${r.height} ${found}${ms.toFixed(1)}ms`,
        );
        await saveImage(r, dir, o, claimed);
      }
      const k = Math.max(total.images, 1);
      const speed = {
        preprocess: total.preprocess / k,
        inference: total.inference / k,
        nms: total.nms / k,
      };
      fs.writeSync(json, `\n  ],\n  "speed": ${JSON.stringify(speed)}\n}\n`);
      fs.closeSync(json);
      out(
        `Speed: ${speed.preprocess.toFixed(1)}ms pre-process, ${speed.inference.toFixed(1)}ms inference, ${speed.nms.toFixed(1)}ms NMS per image`,
      );
      out(`Results saved to ${dir}`);
    });
}

/** The annotated image, labels and crops of one result. */
async function saveImage(
  r: DetectResult,
  dir: string,
  o: DetectCliOptions,
  claimed: Set<string>,
): Promise<void> {
  const stem = path.parse(r.source).name;
  if (o.saveTxt) writeLabels(path.join(dir, 'labels', `${stem}.txt`), r, o.saveConf === true);
  const crops = o.saveCrop
    ? r.boxes.map((b, index) => {
        const cropDir = path.join(dir, 'crops', b.name);
        fs.mkdirSync(cropDir, { recursive: true });
        return { index, path: uniquePath(path.join(cropDir, `${stem}.jpg`), claimed) };
      })
    : [];
  if (o.nosave && crops.length === 0) return;
  const boxes = r.boxes.map((b) => ({
    x1: b.x1,
    y1: b.y1,
    x2: b.x2,
    y2: b.y2,
    cls: b.class,
    label: o.hideLabels ? '' : o.hideConf ? b.name : `${b.name} ${b.confidence.toFixed(2)}`,
  }));
  const ext = path.extname(r.source).toLowerCase() === '.png' ? '.png' : '.jpg';
  await native().drawDetections(r.source, boxes, {
    lineWidth: o.lineThickness,
    ...(o.nosave ? { format: 'bmp' as const } : { output: path.join(dir, `${stem}${ext}`) }),
    crops,
  });
}

function summary(r: DetectResult, names: string[]): string {
  if (r.boxes.length === 0) return '(no detections)';
  const counts = new Map<number, number>();
  for (const b of r.boxes) counts.set(b.class, (counts.get(b.class) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([c, n]) => `${n} ${names[c] ?? c}${n > 1 ? 's' : ''}`)
    .join(', ');
}

/** YOLO rows normalised to the image from whole-pixel boxes, as the reference's detect.py writes them. */
function writeLabels(file: string, r: DetectResult, withConf: boolean): void {
  const lines = yoloTxtRows(r, withConf);
  fs.writeFileSync(file, lines.length ? `${lines.join('\n')}\n` : '');
}

function uniquePath(file: string, claimed: Set<string>): string {
  const free = (p: string): boolean => !claimed.has(p) && !fs.existsSync(p);
  let p = file;
  const { dir, name, ext } = path.parse(file);
  for (let n = 2; !free(p); n++) p = path.join(dir, `${name}${n}${ext}`);
  claimed.add(p);
  return p;
}

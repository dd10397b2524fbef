/** `yolo5 val`: the reference's metrics table on a data set split, saved in runs/val/exp*. */
import { Command, Option } from 'commander';
import { VAL_TASKS, type AmpMode } from '../options';
import { val } from '../val/val';
import { ampOption, parseInteger, parseNumber } from './options';
import { ProgressPrinter, valProgress } from '../report/progress';

interface ValCliOptions {
  weights: string[];
  cfg?: string;
  data: string;
  imgsz: number;
  batch: number;
  conf: number;
  iou: number;
  maxDet: number;
  task: 'val' | 'test' | 'train';
  singleCls?: boolean;
  verbose?: boolean;
  saveTxt?: boolean;
  saveConf?: boolean;
  saveJson?: boolean;
  project: string;
  name: string;
  existOk?: boolean;
  augment?: boolean;
  amp?: AmpMode;
  device?: string;
  noplots?: boolean;
}

export function valCommand(): Command {
  return new Command('val')
    .description('validate a model on a data set: P, R, mAP50, mAP50-95 per class')
    .requiredOption(
      '--weights <files...>',
      'checkpoint (.pt) to validate; several form an ensemble (one NMS over all their boxes)',
    )
    .requiredOption('--data <yaml>', 'data set yaml (path, train, val, test, names)')
    .option('--cfg <yaml>', 'model yaml, for weights that are a plain state dict')
    .option('--img, --imgsz <n>', 'inference size (pixels)', parseInteger('--img', 32), 640)
    .option('--batch <n>', 'batch size', parseInteger('--batch', 1), 32)
    .option('--conf <x>', 'confidence threshold', parseNumber('--conf', 0, 1), 0.001)
    .option('--iou <x>', 'NMS IoU threshold', parseNumber('--iou', 0, 1), 0.6)
    .option('--max-det <n>', 'most detections per image', parseInteger('--max-det', 1), 300)
    .addOption(
      new Option('--task <split>', 'the split to validate').choices(VAL_TASKS).default('val'),
    )
    .option('--single-cls', 'treat every class as one')
    .option('--verbose', 'print every class')
    .option('--save-txt', 'write predictions as YOLO labels')
    .option('--save-conf', 'append confidences to --save-txt rows')
    .option('--save-json', 'write COCO-style predictions.json')
    .option('--project <dir>', 'runs folder', 'runs/val')
    .option('--name <name>', 'run name', 'exp')
    .option('--exist-ok', 'reuse an existing run folder')
    .option('--augment', 'test-time augmentation: scales 1, 0.83 (flipped), 0.67 before one NMS')
    .option('--device <d>', 'cpu (default), a CUDA device index such as 0, or cuda:N')
    .option('--noplots', 'save no curves, confusion matrix or batch mosaics')
    .addOption(ampOption())
    .action(async (o: ValCliOptions) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      const printer = new ProgressPrinter((s) => process.stdout.write(s), true);
      await val({
        plots: o.noplots !== true,
        ...(process.stdout.isTTY ? { progress: valProgress(printer) } : {}),
        weights: o.weights,
        augment: o.augment === true,
        ...(o.cfg !== undefined ? { cfg: o.cfg } : {}),
        ...(o.device !== undefined ? { device: o.device } : {}),
        ...(o.amp !== undefined ? { amp: o.amp } : {}),
        data: o.data,
        imgsz: o.imgsz,
        batch: o.batch,
        conf: o.conf,
        iou: o.iou,
        maxDet: o.maxDet,
        task: o.task,
        singleCls: o.singleCls === true,
        verbose: o.verbose === true,
        saveTxt: o.saveTxt === true,
        saveConf: o.saveConf === true,
        saveJson: o.saveJson === true,
        save: true,
        project: o.project,
        name: o.name,
        existOk: o.existOk === true,
        log: out,
      });
    });
}

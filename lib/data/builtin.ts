/**
 * What `yolo5 train` does when it is not told: the default job. Without --data it is the seed's
 * experiment on built-in data: fine-tune the bundled yolov5n (pretrained by yolo5 on
 * SHAPES_PRETRAIN) on the built-in target set SHAPES_B, whose classes the pretraining never saw.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { modelsDir } from '../native/paths';
import { TRAIN_DEFAULTS } from '../options';
import { SHAPES_B, SHAPES_PRETRAIN, type SyntheticSpec } from './synthetic';

/** The built-in fine-tuning target set: classes the bundled model's pretraining never saw. */
export const BUILTIN_TARGET: SyntheticSpec = SHAPES_B;

/** The bundled pretrained model's file name in models/. */
export const BUNDLED_MODEL = 'yolov5n-shapes.pt';

/** models/yolov5n-shapes.pt, or undefined where it is missing. */
export function bundledModelPath(dir: string = modelsDir()): string | undefined {
  const file = path.join(dir, BUNDLED_MODEL);
  return fs.existsSync(file) ? file : undefined;
}

export interface JobInput {
  data?: string;
  /** '' means none: train from scratch (as the reference's `--weights ''`). */
  weights?: string;
  cfg?: string;
  imgsz?: number;
}

export interface Job {
  /** The data yaml given, or undefined with `dataset` set: the built-in set to generate. */
  data?: string;
  dataset?: SyntheticSpec;
  weights?: string;
  cfg?: string;
  imgsz?: number;
  /** One line saying what was chosen and why (absent when the user chose everything). */
  note?: string;
}

/**
 * The job from what was given (`bundled`: the bundled model's path, null where it is missing):
 * with --data only `--weights ''` changes (to no weights); without it the data is SHAPES_B at
 * its 256 px, and without --weights and --cfg the weights are the bundled model (else a yolov5n
 * from scratch, so --cfg alone still trains from scratch).
 */
export function defaultJob(
  input: JobInput,
  bundled: string | null = bundledModelPath() ?? null,
): Job {
  const weights = input.weights === '' ? undefined : input.weights;
  const given = {
    ...(weights !== undefined ? { weights } : {}),
    ...(input.cfg !== undefined ? { cfg: input.cfg } : {}),
    ...(input.imgsz !== undefined ? { imgsz: input.imgsz } : {}),
  };
  if (input.data !== undefined) return { data: input.data, ...given };
  const target = BUILTIN_TARGET;
  const job: Job = { dataset: target, imgsz: TRAIN_DEFAULTS.builtin.imgsz, ...given };
  const set = `the built-in target set ${target.name} (${target.classes.join(', ')})`;
  if (weights !== undefined) return { ...job, note: `Fine-tuning ${weights} on ${set}` };
  if (input.weights === undefined && input.cfg === undefined && bundled !== null) {
    return {
      ...job,
      weights: bundled,
      note:
        `Fine-tuning the bundled ${BUNDLED_MODEL} (yolov5n pretrained by yolo5 on ` +
        `${SHAPES_PRETRAIN.classes.length} other shape classes) on ${set}; ` +
        `--weights '' --cfg yolov5n.yaml trains from scratch`,
    };
  }
  const cfg = input.cfg ?? TRAIN_DEFAULTS.builtin.cfg;
  const why =
    input.weights === undefined && input.cfg === undefined ? ` (${BUNDLED_MODEL} is missing)` : '';
  return { ...job, cfg, note: `Training ${cfg} from scratch on ${set}${why}` };
}

/** Training hyperparameters: the yolov5 hyp yaml keys, defaults, and range checks. */
import * as path from 'node:path';
import { readYamlFile } from './model';
import { Yolo5Error, show } from '../errors';
import { modelsDir } from '../native/paths';

export interface Hyp {
  lr0: number;
  lrf: number;
  momentum: number;
  weight_decay: number;
  warmup_epochs: number;
  warmup_momentum: number;
  warmup_bias_lr: number;
  box: number;
  cls: number;
  cls_pw: number;
  obj: number;
  obj_pw: number;
  iou_t: number;
  anchor_t: number;
  fl_gamma: number;
  hsv_h: number;
  hsv_s: number;
  hsv_v: number;
  degrees: number;
  translate: number;
  scale: number;
  shear: number;
  perspective: number;
  flipud: number;
  fliplr: number;
  mosaic: number;
  mixup: number;
  copy_paste: number;
  /**
   * Anchors per output level (rounded). Optional: when set, training builds the model with that
   * many anchors per level and autoanchor computes them from the labels (evolution sets it).
   */
  anchors?: number;
}

/** The keys every hyp has (`anchors` is optional). */
export type HypKey = Exclude<keyof Hyp, 'anchors'>;

/** Allowed range of each key: [min, max]. */
export const HYP_RANGES: Readonly<Record<HypKey, [number, number]>> = {
  lr0: [1e-6, 1],
  lrf: [1e-4, 1],
  momentum: [0, 0.999],
  weight_decay: [0, 0.1],
  warmup_epochs: [0, 100],
  warmup_momentum: [0, 0.999],
  warmup_bias_lr: [0, 1],
  box: [0, 100],
  cls: [0, 100],
  cls_pw: [1e-3, 100],
  obj: [0, 100],
  obj_pw: [1e-3, 100],
  iou_t: [0, 1],
  anchor_t: [1, 100],
  fl_gamma: [0, 10],
  hsv_h: [0, 1],
  hsv_s: [0, 1],
  hsv_v: [0, 1],
  degrees: [0, 180],
  translate: [0, 0.9],
  scale: [0, 0.99],
  shear: [0, 90],
  perspective: [0, 0.01],
  flipud: [0, 1],
  fliplr: [0, 1],
  mosaic: [0, 1],
  mixup: [0, 1],
  copy_paste: [0, 0],
};

export const HYP_KEYS = Object.keys(HYP_RANGES) as HypKey[];

/** Allowed range of the optional `anchors` key (anchors per level, rounded when used). */
export const ANCHORS_RANGE: readonly [number, number] = [1, 10];

export interface ReadHypOptions {
  /** Every key must be given (hyperparameter evolution mutates them all): missing keys throw. */
  complete?: boolean;
}

export function defaultHypPath(): string {
  return path.join(modelsDir(), 'hyps', 'hyp.scratch-low.yaml');
}

/**
 * Reads a hyp yaml (or takes an object) over the scratch-low defaults: unknown keys are warned
 * about and ignored, missing keys take the default (with a warning), out-of-range values throw.
 */
export function readHyp(
  source: string | Partial<Hyp> | undefined,
  log: (line: string) => void = () => {},
  options: ReadHypOptions = {},
): Hyp {
  const defaults = readYamlFile(defaultHypPath()) as Hyp;
  if (source === undefined) return { ...defaults };
  const file = typeof source === 'string' ? source : '<hyp object>';
  const raw = typeof source === 'string' ? readYamlFile(source) : source;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Yolo5Error('E_ARG', `${file}: a hyp file must be a mapping of key: value`, { file });
  }
  const out: Hyp = { ...defaults };
  const given = raw as Record<string, unknown>;
  for (const [k, v] of Object.entries(given)) {
    if (!(k in HYP_RANGES) && k !== 'anchors') {
      if (k !== 'label_smoothing')
        log(`WARNING: ${file}: unknown hyperparameter ${show(k)} ignored`);
      continue;
    }
    const [min, max] = k === 'anchors' ? ANCHORS_RANGE : HYP_RANGES[k as HypKey];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      throw new Yolo5Error(
        'E_ARG',
        `${file}: expected a number between ${min} and ${max} for ${k} but received ${show(v)}` +
          (k === 'copy_paste'
            ? ' (copy-paste needs polygon labels, which yolo5 does not train on)'
            : ''),
        { file, value: v },
      );
    }
    out[k as keyof Hyp] = v;
  }
  const missing = HYP_KEYS.filter((k) => !(k in given));
  if (missing.length > 0 && options.complete) {
    throw new Yolo5Error(
      'E_ARG',
      `${file}: missing hyperparameter${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (hyperparameter evolution needs every key; see ${defaultHypPath()})`,
      { file, value: missing },
    );
  }
  if (missing.length > 0 && typeof source === 'string') {
    log(`WARNING: ${file}: missing ${missing.join(', ')}; using the scratch-low defaults for them`);
  }
  return out;
}

/**
 * `detect`: images in, boxes out in source pixels — letterbox, forward and NMS run natively off
 * the event loop; a loaded Model serves concurrent calls.
 */
import type { DeviceSpec } from '../native/device';
import { Yolo5Error } from '../errors';
import {
  predictorDevice,
  predictorStride,
  type Ensemble,
  type Predictor,
} from '../model/ensemble';
import { type Model } from '../model/model';
import { loadModel, singleOrMany } from '../model/load';
import type { NativeImage } from '../native/addon';
import { resolveAmp } from '../native/amp';
import {
  TRAIN_DEFAULTS,
  checkBoolean,
  checkClasses,
  checkImageSize,
  checkInteger,
  checkNumber,
  type AmpMode,
} from '../options';
import { expandImageSources } from '../data/sources';

/** One image: a file path, an encoded image (JPEG/PNG/BMP…), or raw RGB pixels. */
export type ImageInput = string | Uint8Array | RawImage;
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface DetectOptions {
  /** An already loaded model or ensemble (else `weights`/`cfg` are loaded for this call). */
  model?: Model | Ensemble;
  /** A checkpoint, or several: an ensemble whose predictions join before one NMS. */
  weights?: string | readonly string[];
  cfg?: string;
  /** Where `weights` run: 'cpu' (default), a CUDA index (0) or 'cuda:N'. */
  device?: DeviceSpec;
  /** Inference size (long side), rounded up to the model's stride. Default 640. */
  imgsz?: number;
  /** Confidence threshold (obj × cls). Default 0.25. */
  conf?: number;
  /** NMS IoU threshold. Default 0.45. */
  iou?: number;
  /** Most boxes per image. Default 1000. */
  maxDet?: number;
  /** Keep only these classes. */
  classes?: number[];
  /** One NMS across classes. */
  agnosticNms?: boolean;
  /** Keep every (box, class) pair above `conf`, not only each box's best class. Default false. */
  multiLabel?: boolean;
  /** Test-time augmentation: scales 1, 0.83 (flipped), 0.67, merged before NMS. */
  augment?: boolean;
  /** Mixed precision for the forward pass ('auto' default: as training's, see AMP_MODES). */
  amp?: AmpMode;
  log?: (line: string) => void;
}

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  confidence: number;
  class: number;
  name: string;
}

export interface DetectResult {
  /** The path, or "buffer"/"raw" for in-memory inputs. */
  source: string;
  width: number;
  height: number;
  boxes: Box[];
  /** Set when the image could not be read (it has no boxes then). */
  error?: string;
}

export interface DetectSpeed {
  /** Milliseconds per image. */
  preprocess: number;
  inference: number;
  nms: number;
}

export interface DetectOutput {
  results: DetectResult[];
  speed: DetectSpeed;
  model: Model | Ensemble;
}

function isRaw(x: unknown): x is RawImage {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && 'data' in x;
}

/** Expands a source: a path may be a file, a folder or a glob; buffers and raw images stay. */
export function resolveInputs(source: ImageInput | readonly ImageInput[]): ImageInput[] {
  const list = Array.isArray(source) ? (source as ImageInput[]) : [source as ImageInput];
  if (list.length === 0)
    throw new Yolo5Error('E_ARG', 'Expected at least one image for source but received []');
  return list.flatMap((s): ImageInput[] => (typeof s === 'string' ? expandImageSources(s) : [s]));
}

function label(input: ImageInput): string {
  return typeof input === 'string' ? input : isRaw(input) ? 'raw' : 'buffer';
}

/** Runs detection; returns one result per image in input order. */
export async function detectImages(
  source: ImageInput | readonly ImageInput[],
  opts: DetectOptions = {},
): Promise<DetectOutput> {
  const log = opts.log ?? (() => {});
  const model: Predictor =
    opts.model ??
    (await loadModel({
      ...(opts.weights !== undefined ? { weights: singleOrMany(opts.weights) } : {}),
      ...(opts.cfg !== undefined ? { cfg: opts.cfg } : {}),
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      // Inference on freshly initialised tensors is never intended: every tensor must load.
      strict: true,
      log,
    }));
  const stride = predictorStride(model);
  const augment = checkBoolean('augment', opts.augment ?? false);
  const imgsz = checkImageSize('imgsz', opts.imgsz ?? 640, stride, log);
  const conf = checkNumber('conf', opts.conf ?? 0.25, 0, 1);
  const iou = checkNumber('iou', opts.iou ?? 0.45, 0, 1);
  const maxDet = checkInteger('maxDet', opts.maxDet ?? 1000, 1);
  const agnostic = checkBoolean('agnosticNms', opts.agnosticNms ?? false);
  const multiLabel = checkBoolean('multiLabel', opts.multiLabel ?? false);
  const classes =
    opts.classes !== undefined ? checkClasses('classes', opts.classes, model.nc) : undefined;
  const { amp, note } = resolveAmp(opts.amp ?? TRAIN_DEFAULTS.amp, predictorDevice(model));
  if (note) log(note);
  const inputs = resolveInputs(source);
  for (const input of inputs) {
    if (
      isRaw(input) &&
      (!(input.data instanceof Uint8Array) || input.data.length !== input.width * input.height * 3)
    ) {
      throw new Yolo5Error(
        'E_ARG',
        `Expected width × height × 3 RGB bytes for a raw image but received ${input.data?.length} bytes for ${input.width}×${input.height}`,
      );
    }
  }
  const { results, timing } = await model.predict(inputs as NativeImage[], {
    imgsz,
    conf,
    iou,
    maxDet,
    agnostic,
    multiLabel,
    augment,
    amp,
    ...(classes ? { classes } : {}),
  });
  const out = results.map((r, i): DetectResult => {
    const boxes: Box[] = [];
    const d = r.detections;
    for (let k = 0; k + 6 <= d.length; k += 6) {
      const cls = Math.round(d[k + 5]!);
      boxes.push({
        x1: d[k]!,
        y1: d[k + 1]!,
        x2: d[k + 2]!,
        y2: d[k + 3]!,
        confidence: d[k + 4]!,
        class: cls,
        name: model.names[cls] ?? String(cls),
      });
    }
    const result: DetectResult = {
      source: label(inputs[i]!),
      width: r.width,
      height: r.height,
      boxes,
    };
    if (!r.ok) {
      result.error = r.error ?? 'unreadable image';
      log(`WARNING: skipping ${result.source}: ${result.error}`);
    }
    return result;
  });
  const n = Math.max(timing.images, 1);
  return {
    results: out,
    speed: { preprocess: timing.pre / n, inference: timing.inference / n, nms: timing.nms / n },
    model,
  };
}

/** Detects objects; resolves to one result per image, boxes in source pixels. */
export async function detect(
  source: ImageInput | readonly ImageInput[],
  opts: DetectOptions = {},
): Promise<DetectResult[]> {
  return (await detectImages(source, opts)).results;
}

/**
 * `detect`: images in, boxes out in source pixels — letterbox, forward and NMS run natively off
 * the event loop; a loaded Model serves concurrent calls.
 */
import type { DeviceSpec } from '../native/device';
import { Yolo5Error } from '../errors';
import { predictorDevice, predictorStride, type Ensemble, type Predictor } from '../model/ensemble';
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

interface Prepared {
  model: Predictor;
  inputs: ImageInput[];
  predict: Parameters<Predictor['predict']>[1];
}

/** Loads the model (unless given), checks the options and expands the sources. */
async function prepare(
  source: ImageInput | readonly ImageInput[],
  opts: DetectOptions,
): Promise<Prepared> {
  const log = opts.log ?? (() => {});
  // Sources first: a bad one (a missing file, a webcam, a video) is reported before the model loads.
  const inputs = resolveInputs(source);
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
  const predict = {
    imgsz,
    conf,
    iou,
    maxDet,
    agnostic,
    multiLabel,
    augment,
    amp,
    ...(classes ? { classes } : {}),
  };
  return { model, inputs, predict };
}

function toResults(
  prepared: Prepared,
  inputs: ImageInput[],
  results: {
    ok: boolean;
    error?: string;
    width: number;
    height: number;
    detections: Float32Array;
  }[],
  log: (line: string) => void,
): DetectResult[] {
  const names = prepared.model.names;
  return results.map((r, i): DetectResult => {
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
        name: names[cls] ?? String(cls),
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
}

/** Runs detection; returns one result per image in input order. */
export async function detectImages(
  source: ImageInput | readonly ImageInput[],
  opts: DetectOptions = {},
): Promise<DetectOutput> {
  const prepared = await prepare(source, opts);
  const { results, timing } = await prepared.model.predict(
    prepared.inputs as NativeImage[],
    prepared.predict,
  );
  const n = Math.max(timing.images, 1);
  return {
    results: toResults(prepared, prepared.inputs, results, opts.log ?? (() => {})),
    speed: { preprocess: timing.pre / n, inference: timing.inference / n, nms: timing.nms / n },
    model: prepared.model,
  };
}

/** One image's result as `detectStream` yields it. */
export interface StreamedResult extends DetectResult {
  /** 0-based position among the expanded sources, and their number. */
  index: number;
  total: number;
  /** This image's milliseconds. */
  speed: DetectSpeed;
}

/** A stream of images being detected: the model (loaded once), then each result as it finishes. */
export interface DetectStream extends AsyncIterable<StreamedResult> {
  model: Model | Ensemble;
  total: number;
}

/**
 * Detects images one after another (the next one already running), yielding each result as soon
 * as it is ready: at most two images are held, so a folder of any size runs in constant memory. The boxes equal
 * `detectImages`' (each image is letterboxed and predicted alone in both).
 */
export async function detectStream(
  source: ImageInput | readonly ImageInput[],
  opts: DetectOptions = {},
): Promise<DetectStream> {
  const prepared = await prepare(source, opts);
  const log = opts.log ?? (() => {});
  const total = prepared.inputs.length;
  const predictOne = (index: number) => {
    const p = prepared.model.predict([prepared.inputs[index] as NativeImage], prepared.predict);
    p.catch(() => {}); // awaited below; a stream left early must not leave a rejection unhandled
    return p;
  };
  async function* run(): AsyncGenerator<StreamedResult> {
    // One image ahead: the next image decodes while this one is handed out.
    let pending = total > 0 ? predictOne(0) : undefined;
    for (let index = 0; index < total; index++) {
      const { results, timing } = await pending!;
      pending = index + 1 < total ? predictOne(index + 1) : undefined;
      const [result] = toResults(prepared, [prepared.inputs[index]!], results, log);
      yield {
        ...result!,
        index,
        total,
        speed: { preprocess: timing.pre, inference: timing.inference, nms: timing.nms },
      };
    }
  }
  return { model: prepared.model, total, [Symbol.asyncIterator]: run };
}

/** Detects objects; resolves to one result per image, boxes in source pixels. */
export async function detect(
  source: ImageInput | readonly ImageInput[],
  opts: DetectOptions = {},
): Promise<DetectResult[]> {
  return (await detectImages(source, opts)).results;
}

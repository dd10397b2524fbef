/// <reference types="node" preserve="true" />
/**
 * The hub-style API: `const model = await load('yolov5s.pt')`, then `await model(images)`. The
 * callable wraps `detectImages` (one predict pipeline) and carries the reference's inference
 * settings as properties; `Results` gives box arrays, records, annotated images and crops.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfigPath } from '../config/model';
import {
  detectImages,
  resolveInputs,
  type DetectOptions,
  type DetectOutput,
  type DetectResult,
  type DetectSpeed,
  type ImageInput,
} from './detect';
import { Yolo5Error, show } from '../errors';
import { Model, type LoadModelOptions } from '../model/model';
import { loadModel } from '../model/load';
import { native, nativeCall, type NativeDrawBox, type NativeImage } from '../native/addon';
import { checkBoolean, checkClasses, checkInteger, checkNumber } from '../options';

export interface LoadOptions extends Omit<LoadModelOptions, 'weights' | 'cfg'> {
  /** Model yaml, for weights that are a plain state dict. */
  cfg?: string;
  /** Fold BatchNorm into the convolutions: faster; boxes may move in the last digits. */
  fuse?: boolean;
}

export interface CallOptions {
  /** Inference size (long side), rounded up to the stride. Default 640. */
  size?: number;
  /** Test-time augmentation (flips and scales). */
  augment?: boolean;
}

/** `await load(...)`: call it on images; the settings below apply to every later call. */
export interface HubModel {
  (images: ImageInput | readonly ImageInput[], opts?: CallOptions): Promise<Results>;
  /** Confidence threshold (obj × cls), default 0.25. */
  conf: number;
  /** NMS IoU threshold, default 0.45. */
  iou: number;
  /** Keep only these class indices; null keeps all (default). */
  classes: number[] | null;
  /** Most detections per image, default 1000. */
  maxDet: number;
  /** One NMS across classes, default false. */
  agnostic: boolean;
  /** Several classes per box, default false. */
  multiLabel: boolean;
  readonly names: string[];
  /** The largest stride (sizes are rounded up to a multiple of it). */
  readonly stride: number;
  readonly model: Model;
}

/** One detection as the reference's `results.pandas().xyxy[i]` prints a row. */
export interface DetectionRecord {
  xmin: number;
  ymin: number;
  xmax: number;
  ymax: number;
  confidence: number;
  class: number;
  name: string;
}

export interface RenderOptions {
  /** Encoding of the annotated images (default 'jpeg'). */
  format?: 'jpeg' | 'jpg' | 'png';
  /** Draw the class name tag (default true). */
  labels?: boolean;
  /** Add the confidence to the tag (default true). */
  conf?: boolean;
  /** Box line width in pixels (default: about 0.3% of the image size, at least 2). */
  lineWidth?: number;
}

export interface CropOptions {
  /** Encoding of each crop (default 'jpeg'). */
  format?: 'jpeg' | 'jpg' | 'png';
}

export interface Crop {
  /** Index of the image in the results. */
  image: number;
  /** x1, y1, x2, y2 in source pixels. */
  box: [number, number, number, number];
  confidence: number;
  class: number;
  name: string;
  /** "name 0.87", as drawn by render(). */
  label: string;
  width: number;
  height: number;
  /** The encoded crop of the unannotated image. */
  data: Uint8Array;
}

type Row = [number, number, number, number, number, number];

function imageFormat(name: string, value: unknown): 'jpg' | 'png' {
  if (value === undefined || value === 'jpeg' || value === 'jpg') return 'jpg';
  if (value === 'png') return 'png';
  throw new Yolo5Error(
    'E_ARG',
    `Expected 'jpeg' or 'png' for ${name} but received ${show(value)}`,
    { value },
  );
}

/** The detections of one call, per image in input order. */
export class Results {
  /** Per image: the file name, or `image{i}.jpg` for buffers and raw pixels (as the reference). */
  readonly files: string[];
  /** Per image: source width and height. */
  readonly sizes: { width: number; height: number }[];
  readonly names: string[];
  /** The inference size asked for. */
  readonly size: number;
  /** Milliseconds per image. */
  readonly speed: DetectSpeed;
  /** The underlying per-image results (boxes as objects). */
  readonly detections: DetectResult[];
  /** Per image rows [x1, y1, x2, y2, confidence, class] in source pixels. */
  readonly xyxy: Row[][];
  /** Per image rows [cx, cy, w, h, confidence, class] in source pixels. */
  readonly xywh: Row[][];
  /** xyxy divided by the image size. */
  readonly xyxyn: Row[][];
  /** xywh divided by the image size. */
  readonly xywhn: Row[][];
  readonly #inputs: ImageInput[];

  /** @internal Built by the hub model. */
  constructor(inputs: ImageInput[], out: DetectOutput, size: number) {
    this.#inputs = inputs;
    this.detections = out.results;
    this.names = out.model.names;
    this.size = size;
    this.speed = out.speed;
    this.files = out.results.map((r, i) =>
      typeof inputs[i] === 'string' ? path.basename(r.source) : `image${i}.jpg`,
    );
    this.sizes = out.results.map((r) => ({ width: r.width, height: r.height }));
    this.xyxy = out.results.map((r) =>
      r.boxes.map((b): Row => [b.x1, b.y1, b.x2, b.y2, b.confidence, b.class]),
    );
    this.xywh = this.xyxy.map((rows) =>
      rows.map(([x1, y1, x2, y2, c, k]): Row => [
        (x1 + x2) / 2,
        (y1 + y2) / 2,
        x2 - x1,
        y2 - y1,
        c,
        k,
      ]),
    );
    const norm = (rows: Row[][]) =>
      rows.map((img, i) => {
        const { width: w, height: h } = this.sizes[i]!;
        return img.map(([a, b, c, d, e, f]): Row => [a / w, b / h, c / w, d / h, e, f]);
      });
    this.xyxyn = norm(this.xyxy);
    this.xywhn = norm(this.xywh);
  }

  /** Number of images. */
  get length(): number {
    return this.detections.length;
  }

  /** Per image the detections as records, highest confidence first. */
  toJSON(): DetectionRecord[][] {
    return this.detections.map((r) =>
      r.boxes
        .map((b) => ({
          xmin: b.x1,
          ymin: b.y1,
          xmax: b.x2,
          ymax: b.y2,
          confidence: b.confidence,
          class: b.class,
          name: b.name,
        }))
        .sort((a, b) => b.confidence - a.confidence),
    );
  }

  /** The annotated images, encoded (JPEG by default), drawn as `yolo5 detect` draws them. */
  async render(opts: RenderOptions = {}): Promise<Uint8Array[]> {
    const format = imageFormat('format', opts.format);
    const labels = checkBoolean('labels', opts.labels ?? true);
    const conf = checkBoolean('conf', opts.conf ?? true);
    const lineWidth =
      opts.lineWidth === undefined ? undefined : checkInteger('lineWidth', opts.lineWidth, 1);
    return Promise.all(
      this.detections.map(async (r, i) => {
        const boxes: NativeDrawBox[] = r.boxes.map((b) => ({
          x1: b.x1,
          y1: b.y1,
          x2: b.x2,
          y2: b.y2,
          cls: b.class,
          label: !labels ? '' : conf ? `${b.name} ${b.confidence.toFixed(2)}` : b.name,
        }));
        const bytes = await nativeCall(`rendering ${this.files[i]}`, () =>
          native().drawDetections(this.#inputs[i] as NativeImage, boxes, {
            ...(lineWidth !== undefined ? { lineWidth } : {}),
            format,
          }),
        );
        return bytes!;
      }),
    );
  }

  /**
   * Every detection cut out of its (unannotated) image, in result order: the same crops
   * `yolo5 detect --save-crop` writes. Boxes under a pixel wide are widened to one pixel.
   */
  async crop(opts: CropOptions = {}): Promise<Crop[]> {
    const ext = imageFormat('format', opts.format);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'yolo5-crops-'));
    try {
      const crops: Crop[] = [];
      for (let i = 0; i < this.detections.length; i++) {
        const r = this.detections[i]!;
        if (r.boxes.length === 0) continue;
        // The native crop truncates to whole pixels and clamps to the image, as computed here.
        const px = (v: number, max: number) => Math.min(Math.max(Math.trunc(v), 0), max);
        const boxes = r.boxes.map((b) => {
          let x1 = px(b.x1, r.width);
          let y1 = px(b.y1, r.height);
          let x2 = px(b.x2, r.width);
          let y2 = px(b.y2, r.height);
          if (x2 <= x1) [x1, x2] = x1 < r.width ? [x1, x1 + 1] : [x1 - 1, x1];
          if (y2 <= y1) [y1, y2] = y1 < r.height ? [y1, y1 + 1] : [y1 - 1, y1];
          return { x1, y1, x2, y2, cls: b.class, label: '' };
        });
        const files = boxes.map((_, k) => path.join(dir, `${i}-${k}.${ext}`));
        await nativeCall(`cropping ${this.files[i]}`, () =>
          native().drawDetections(this.#inputs[i] as NativeImage, boxes, {
            format: 'bmp',
            crops: files.map((p, index) => ({ index, path: p })),
          }),
        );
        r.boxes.forEach((b, k) => {
          const c = boxes[k]!;
          crops.push({
            image: i,
            box: [b.x1, b.y1, b.x2, b.y2],
            confidence: b.confidence,
            class: b.class,
            name: b.name,
            label: `${b.name} ${b.confidence.toFixed(2)}`,
            width: c.x2 - c.x1,
            height: c.y2 - c.y1,
            data: new Uint8Array(fs.readFileSync(files[k]!)),
          });
        });
      }
      return crops;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** "image 1/2: 256x256 2 ellipses, 1 rect" per image, then the speed line. */
  toString(): string {
    const lines = this.detections.map((r, i) => {
      const counts = new Map<number, number>();
      for (const b of r.boxes) counts.set(b.class, (counts.get(b.class) ?? 0) + 1);
      const what =
        counts.size === 0
          ? '(no detections)'
          : [...counts.entries()]
              .sort((a, b) => a[0] - b[0])
              .map(([c, n]) => `${n} ${this.names[c] ?? c}${n > 1 ? 's' : ''}`)
              .join(', ');
      return `image ${i + 1}/${this.length}: ${r.width}x${r.height} ${what}`;
    });
    const s = this.speed;
    lines.push(
      `Speed: ${s.preprocess.toFixed(1)}ms pre-process, ${s.inference.toFixed(1)}ms inference, ${s.nms.toFixed(1)}ms NMS per image at size ${this.size}`,
    );
    return lines.join('\n');
  }

  /** Writes toString() to stdout. */
  print(): void {
    process.stdout.write(`${this.toString()}\n`);
  }
}

interface Settings {
  conf: number;
  iou: number;
  classes: number[] | null;
  maxDet: number;
  agnostic: boolean;
  multiLabel: boolean;
}

/** The one place hub settings and call options become detectImages options. */
function detectOptions(
  model: Model,
  s: Settings,
  call: CallOptions,
  log: (line: string) => void,
): DetectOptions {
  return {
    augment: checkBoolean('augment', call.augment ?? false),
    model,
    imgsz: checkInteger('size', call.size ?? 640, 1),
    conf: s.conf,
    iou: s.iou,
    maxDet: s.maxDet,
    ...(s.classes !== null ? { classes: s.classes } : {}),
    agnosticNms: s.agnostic,
    multiLabel: s.multiLabel,
    log,
  };
}

async function openModel(source: string | Model, opts: LoadOptions): Promise<Model> {
  if (source instanceof Model) return source;
  if (typeof source !== 'string' || source === '') {
    throw new Yolo5Error(
      'E_ARG',
      `Expected a weights file, a model yaml or a Model for load but received ${show(source)}`,
      { value: source },
    );
  }
  const { fuse: _fuse, cfg, ...rest } = opts;
  let isConfig = /\.ya?ml$/i.test(source);
  if (!isConfig && !fs.existsSync(source)) {
    try {
      resolveConfigPath(source);
      isConfig = true;
    } catch {
      throw new Yolo5Error(
        'E_FILE',
        `Weights file ${source} not found (yolo5 downloads nothing: pass a local .pt, or a model yaml such as 'yolov5s.yaml' for an untrained model)`,
        { file: source },
      );
    }
  }
  if (isConfig) {
    opts.log?.(`WARNING: ${source} is a model config: its weights are untrained`);
    return loadModel({ ...rest, cfg: source });
  }
  return loadModel({ ...rest, weights: source, ...(cfg !== undefined ? { cfg } : {}) });
}

/**
 * Loads a model for inference: a checkpoint (`yolov5s.pt`, `runs/train/exp/weights/best.pt`), a
 * model yaml or bundled config name (untrained weights), or an already loaded Model. Resolves to
 * a function of images; see HubModel.
 */
export async function load(source: string | Model, opts: LoadOptions = {}): Promise<HubModel> {
  const model = await openModel(source, opts);
  if (opts.fuse === true && !model.info().fused) await model.fuse();
  const log = opts.log ?? (() => {});
  const settings: Settings = {
    conf: 0.25,
    iou: 0.45,
    classes: null,
    maxDet: 1000,
    agnostic: false,
    multiLabel: false,
  };
  const call = async (
    images: ImageInput | readonly ImageInput[],
    callOpts: CallOptions = {},
  ): Promise<Results> => {
    const detectOpts = detectOptions(model, settings, callOpts, log);
    const inputs = resolveInputs(images);
    const out = await detectImages(inputs, detectOpts);
    const bad = out.results.find((r) => r.error !== undefined);
    if (bad) {
      throw new Yolo5Error('E_FILE', `Cannot read image ${bad.source}: ${bad.error}`, {
        file: bad.source,
      });
    }
    return new Results(inputs, out, detectOpts.imgsz!);
  };
  const setting = <K extends keyof Settings>(key: K, check: (v: unknown) => Settings[K]) => ({
    get: () => settings[key],
    set: (v: unknown) => {
      settings[key] = check(v);
    },
    enumerable: true,
  });
  Object.defineProperties(call, {
    conf: setting('conf', (v) => checkNumber('conf', v, 0, 1)),
    iou: setting('iou', (v) => checkNumber('iou', v, 0, 1)),
    classes: setting('classes', (v) =>
      v === null ? null : [...checkClasses('classes', v, model.nc)],
    ),
    maxDet: setting('maxDet', (v) => checkInteger('maxDet', v, 1)),
    agnostic: setting('agnostic', (v) => checkBoolean('agnostic', v)),
    multiLabel: setting('multiLabel', (v) => checkBoolean('multiLabel', v)),
    names: { value: model.names, enumerable: true },
    stride: { value: Math.max(...model.info().stride), enumerable: true },
    model: { value: model, enumerable: true },
  });
  return call as HubModel;
}

/**
 * `exportModel`: writes a model as a file other runtimes load. ONNX is written here, in
 * TypeScript (graph and protobuf encoding), from the resolved model spec and the weights with
 * every BatchNorm folded in; the Detect decode is part of the graph, so the output is what
 * `Model.forward` returns in eval mode.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolveModel } from '../config/model';
import { Yolo5Error, fileError, show } from '../errors';
import type { Model } from '../model/model';
import { makeDirs } from '../native/paths';
import { version } from '../native/runtime';
import { buildGraph, type StateTensor } from './graph';
import { exportYolov5, type Yolov5ExportResult } from './yolov5-file';

/** Formats `exportModel` writes. */
export const EXPORT_FORMATS = ['onnx', 'yolov5'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** File extension of each format. */
export const EXPORT_SUFFIX: Record<ExportFormat, string> = { onnx: '.onnx', yolov5: '-yolov5.pt' };

export const MIN_OPSET = 12;
export const MAX_OPSET = 17;

export interface ExportOptions {
  /** Output format (default 'onnx'). */
  format?: string;
  /**
   * Output file. Default: next to the weights the model was loaded from, with the format's
   * extension (a model built from a yaml alone needs `file`).
   */
  file?: string;
  /** Input size: one number (square) or [height, width]; multiples of the largest stride. Default 640. */
  imgsz?: number | [number, number];
  /** Batch size of a fixed-shape export (default 1). */
  batch?: number;
  /**
   * Dynamic axes: `true` (or 'all') makes batch, height and width dynamic (the Detect grids are
   * built in the graph); 'batch' makes only the batch dynamic. Default false: all fixed.
   */
  dynamic?: boolean | 'all' | 'batch';
  /** ONNX opset, 12…17 (default 17). */
  opset?: number;
  /** Replace an existing file (default false: an existing file is an error). */
  force?: boolean;
}

export interface ExportResult {
  format: 'onnx';
  file: string;
  bytes: number;
  opset: number;
  input: { name: string; shape: (number | string)[] };
  output: { name: string; shape: (number | string)[] };
}

function checkInteger(name: string, value: unknown, min: number, max = Infinity): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `>= ${min}` : `between ${min} and ${max}`;
    throw new Yolo5Error(
      'E_ARG',
      `Expected integer ${range} for ${name} but received ${show(value)}`,
      {
        value,
      },
    );
  }
  return value;
}

/** Checks a format name: lower-cased; unknown names list the supported ones. */
export function checkExportFormat(format: string): ExportFormat {
  const f = format.trim().toLowerCase();
  if ((EXPORT_FORMATS as readonly string[]).includes(f)) return f as ExportFormat;
  const hint =
    f === 'torchscript'
      ? ' (TorchScript export is not offered: see the README section "Export")'
      : '';
  throw new Yolo5Error(
    'E_ARG',
    `Unknown export format ${show(format)}${hint}; supported: ${EXPORT_FORMATS.join(', ')}`,
    { value: format },
  );
}

/** Exports `model`; see `ExportOptions`. Never overwrites a file unless `force`. */
export async function exportModel(
  model: Model,
  opts: ExportOptions & { format: 'yolov5' },
): Promise<Yolov5ExportResult>;
export async function exportModel(
  model: Model,
  opts?: ExportOptions & { format?: 'onnx' },
): Promise<ExportResult>;
export async function exportModel(
  model: Model,
  opts?: ExportOptions,
): Promise<ExportResult | Yolov5ExportResult>;
export async function exportModel(
  model: Model,
  opts: ExportOptions = {},
): Promise<ExportResult | Yolov5ExportResult> {
  const format = checkExportFormat(opts.format ?? 'onnx');
  if (format === 'yolov5') return exportYolov5(model, targetFile(model, format, opts));
  return exportOnnx(model, opts);
}

/** The output path: given or next to the weights; an existing file only with `force`. */
function targetFile(model: Model, format: ExportFormat, opts: ExportOptions): string {
  const file = path.resolve(opts.file ?? defaultExportFile(model, format));
  if (fs.existsSync(file) && opts.force !== true) {
    throw new Yolo5Error(
      'E_FILE',
      `${file} already exists; not overwriting it (pass force / --force to replace it)`,
      { file },
    );
  }
  return file;
}

async function exportOnnx(model: Model, opts: ExportOptions): Promise<ExportResult> {
  const format = 'onnx';
  const info = model.info();
  const maxStride = Math.max(...info.stride);
  const imgsz = opts.imgsz ?? 640;
  const [height, width] = (Array.isArray(imgsz) ? imgsz : [imgsz, imgsz]) as number[];
  if (!Array.isArray(imgsz) && typeof imgsz !== 'number')
    throw new Yolo5Error(
      'E_ARG',
      `Expected a number or [height, width] for imgsz but received ${show(imgsz)}`,
    );
  if (Array.isArray(imgsz) && imgsz.length !== 2)
    throw new Yolo5Error(
      'E_ARG',
      `Expected [height, width] for imgsz but received ${show(imgsz)}`,
      {
        value: imgsz,
      },
    );
  for (const [name, v] of [
    ['imgsz height', height],
    ['imgsz width', width],
  ] as const) {
    checkInteger(name, v, maxStride);
    if (v! % maxStride !== 0) {
      throw new Yolo5Error(
        'E_ARG',
        `Expected integer multiple of ${maxStride} for ${name} but received ${v}`,
        { value: v },
      );
    }
  }
  const batch = checkInteger('batch', opts.batch ?? 1, 1);
  const opset = checkInteger('opset', opts.opset ?? MAX_OPSET, MIN_OPSET, MAX_OPSET);
  const dynamic = opts.dynamic ?? false;
  if (![true, false, 'all', 'batch'].includes(dynamic)) {
    throw new Yolo5Error(
      'E_ARG',
      `Expected true, false, "all" or "batch" for dynamic but received ${show(dynamic)}`,
      { value: dynamic },
    );
  }
  const dynamicBatch = dynamic !== false;
  const dynamicSize = dynamic === true || dynamic === 'all';
  const file = targetFile(model, format, opts);

  const resolved = resolveModel(model.config, model.source, {
    nc: model.nc,
    ch: model.nativeHandle().info().inChannels,
  });
  const state = new Map<string, StateTensor>();
  for (const t of await model.getState()) {
    if (t.data instanceof Float32Array) state.set(t.name, { shape: t.shape, data: t.data });
    else if (!t.name.endsWith('num_batches_tracked'))
      throw new Yolo5Error(
        'E_WEIGHTS',
        `cannot export ${t.name}: dtype ${t.dtype}, expected float32`,
      );
  }
  const built = buildGraph({
    spec: resolved.spec,
    state,
    stride: info.stride,
    anchors: info.anchors,
    nc: model.nc,
    batch: dynamicBatch ? 'batch' : batch,
    height: dynamicSize ? 'height' : height!,
    width: dynamicSize ? 'width' : width!,
  });
  const bytes = built.graph.toModelProto({
    graphName: path.basename(file, path.extname(file)),
    opset,
    producer: 'yolo5',
    producerVersion: version,
    docString:
      'YOLOv5 (v7.0) exported by yolo5: output (batch, anchors, 5 + nc) as cx, cy, w, h, obj, classes in input pixels, before NMS',
    metadata: {
      stride: JSON.stringify(info.stride),
      names: JSON.stringify(Object.fromEntries(model.names.map((n, i) => [String(i), n]))),
      imgsz: JSON.stringify([height, width]),
    },
  });
  makeDirs(path.dirname(file), 'output folder');
  try {
    // 'wx' fails instead of replacing a file that appeared since the check above.
    fs.writeFileSync(file, bytes, { flag: opts.force === true ? 'w' : 'wx' });
  } catch (e) {
    throw fileError('write', file, e);
  }
  return {
    format,
    file,
    bytes: bytes.length,
    opset,
    input: { name: built.inputName, shape: built.graph.inputs[0]!.dims },
    output: { name: built.outputName, shape: built.outputDims },
  };
}

/** The weights file with the format's extension, e.g. runs/train/exp/weights/best.onnx. */
export function defaultExportFile(model: Model, format: ExportFormat): string {
  const weights = model.transfer?.file;
  if (weights === undefined) {
    throw new Yolo5Error(
      'E_ARG',
      'exportModel needs file: the model was not loaded from a weights file to put it next to',
    );
  }
  const ext = path.extname(weights);
  return `${ext ? weights.slice(0, -ext.length) : weights}${EXPORT_SUFFIX[format]}`;
}

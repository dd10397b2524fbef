/** `yolo5 export`: writes a checkpoint as ONNX (graph with the Detect decode, BatchNorm folded). */
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Yolo5Error } from '../errors';
import {
  checkExportFormat,
  defaultExportFile,
  EXPORT_FORMATS,
  exportModel,
  MAX_OPSET,
  MIN_OPSET,
  type ExportFormat,
} from '../export';
import { loadModel } from '../model/load';
import { parseInteger } from './options';

const DEFAULT_IMGSZ = [640];

interface ExportCliOptions {
  weights: string;
  cfg?: string;
  include: string[];
  imgsz: number[];
  batch: number;
  dynamic?: boolean | string;
  opset: number;
  out?: string;
  force?: boolean;
}

export function exportCommand(): Command {
  const size = parseInteger('--imgsz', 1);
  return new Command('export')
    .description(
      'export a checkpoint for other runtimes (ONNX, checked against onnxruntime) or for Python YOLOv5 (yolov5)',
    )
    .requiredOption('--weights <file>', 'checkpoint (.pt) to export')
    .option('--cfg <yaml>', 'model yaml, for weights that are a plain state dict')
    .option('--include <formats...>', `formats to write (${EXPORT_FORMATS.join(', ')})`, ['onnx'])
    .option(
      '--img, --imgsz <n...>',
      'input size: one value (square) or height width',
      (v: string, prev: number[] | undefined) =>
        prev === undefined || prev === DEFAULT_IMGSZ ? [size(v)] : [...prev, size(v)],
      DEFAULT_IMGSZ,
    )
    .option('--batch <n>', 'batch size of a fixed-shape export', parseInteger('--batch', 1), 1)
    .addOption(
      new Option(
        '--dynamic [axes]',
        'dynamic axes: "all" (batch, height, width; the default) or "batch"',
      ).choices(['all', 'batch']),
    )
    .option(
      '--opset <n>',
      `ONNX opset (${MIN_OPSET}..${MAX_OPSET})`,
      parseInteger('--opset', MIN_OPSET),
      MAX_OPSET,
    )
    .option('--out <file>', 'output file (default: next to the weights, with the new extension)')
    .option('--force', 'replace an existing output file')
    .action(async (o: ExportCliOptions) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      if (o.imgsz.length > 2) {
        throw new Yolo5Error(
          'E_ARG',
          `Expected one or two values (height width) for --imgsz but received ${o.imgsz.join(' ')}`,
        );
      }
      const formats: ExportFormat[] = [...new Set(o.include.map(checkExportFormat))];
      if (o.out !== undefined && formats.length > 1) {
        throw new Yolo5Error(
          'E_ARG',
          `--out names one file but --include asks for ${formats.length} formats (${formats.join(', ')})`,
        );
      }
      const model = await loadModel({
        weights: o.weights,
        ...(o.cfg !== undefined ? { cfg: o.cfg } : {}),
        // A file written from freshly initialised tensors is never intended: every tensor loads.
        strict: true,
        log: out,
      });
      const imgsz: [number, number] =
        o.imgsz.length === 1 ? [o.imgsz[0]!, o.imgsz[0]!] : [o.imgsz[0]!, o.imgsz[1]!];
      const dynamic = o.dynamic === undefined ? false : o.dynamic === true ? 'all' : o.dynamic;
      for (const format of formats) {
        const r = await exportModel(model, {
          format,
          file: o.out ?? defaultExportFile(model, format),
          imgsz,
          batch: o.batch,
          dynamic: dynamic as false | 'all' | 'batch',
          opset: o.opset,
          force: o.force === true,
        });
        const where = path.relative(process.cwd(), r.file) || r.file;
        if (r.format === 'yolov5') {
          out(
            `YOLOV5: wrote ${where} (${(r.bytes / 1e6).toFixed(1)} MB, DetectionModel, float16): ` +
              `Python YOLOv5 loads it with torch.load(..., weights_only=False), e.g. detect.py --weights`,
          );
          continue;
        }
        const shape = (s: (number | string)[]) => `(${s.join(', ')})`;
        out(
          `${format.toUpperCase()}: wrote ${where} ` +
            `(${(r.bytes / 1e6).toFixed(1)} MB, opset ${r.opset}): ` +
            `input ${r.input.name} ${shape(r.input.shape)}, output ${r.output.name} ${shape(r.output.shape)}`,
        );
      }
    });
}

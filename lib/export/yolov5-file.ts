/**
 * `exportModel(model, { format: 'yolov5' })`: the model as Python YOLOv5's stripped checkpoint
 * (see yolov5.ts for the object graph), with the top-level keys the reference writes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeTorchFile, type HostTensor, type Picklable } from '../checkpoint';
import { resolveModel } from '../config/model';
import { Yolo5Error } from '../errors';
import type { Model } from '../model/model';
import { yolov5ModelObject } from './yolov5';

export interface Yolov5ExportResult {
  format: 'yolov5';
  file: string;
  bytes: number;
  /** Tensors written (float16 weights, int64 BatchNorm counters). */
  tensors: number;
}

function hostTensor(t: { name: string; shape: number[]; data: unknown }): HostTensor {
  if (t.data instanceof Float32Array) return { dtype: 'float32', shape: t.shape, data: t.data };
  if (t.data instanceof BigInt64Array) return { dtype: 'int64', shape: t.shape, data: t.data };
  throw new Yolo5Error('E_WEIGHTS', `cannot export ${t.name} for YOLOv5: unexpected dtype`);
}

export async function exportYolov5(model: Model, file: string): Promise<Yolov5ExportResult> {
  const ch = model.nativeHandle().info().inChannels;
  const resolved = resolveModel(model.config, model.source, { nc: model.nc, ch });
  const state = new Map<string, HostTensor>();
  for (const t of await model.getState()) state.set(t.name, hostTensor(t));
  const rows = [...model.config.backbone, ...model.config.head];
  const sourceFile = model.source.file;
  const object = yolov5ModelObject({
    layers: resolved.spec.layers,
    froms: rows.map((r) => r[0]),
    activation: resolved.spec.activation,
    state,
    parameters: new Set(model.namedParameters().map((p) => p.name)),
    yaml: { ...(model.config as unknown as Record<string, unknown>), nc: model.nc, ch },
    yamlFile: sourceFile.endsWith('.yaml') ? path.basename(sourceFile) : 'model.yaml',
    names:
      model.names.length === model.nc
        ? model.names
        : Array.from({ length: model.nc }, (_, i) => String(i)),
    stride: model.info().stride,
  });
  const top: Record<string, Picklable> = {
    epoch: -1,
    best_fitness: null,
    model: object,
    ema: null,
    updates: null,
    optimizer: null,
    opt: null,
    git: { remote: null, branch: null, commit: null },
    // Python's datetime.now().isoformat() has no zone suffix.
    date: new Date().toISOString().replace('Z', ''),
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeTorchFile(file, top);
  return { format: 'yolov5', file, bytes: fs.statSync(file).size, tensors: state.size };
}

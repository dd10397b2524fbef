/// <reference types="node" preserve="true" />
/**
 * yolo5 — YOLOv5 (v7.0) training, validation and detection for Node.js on LibTorch.
 */
import { type LoadModelOptions, type ParameterInfo } from './model/model';
import { loadModel } from './model/load';
import type { FreezeSpec } from './model/freeze';

export { Model } from './model/model';
export { loadModel } from './model/load';
export { Ensemble } from './model/ensemble';
export type { Predictor } from './model/ensemble';
export { detect, detectImages, detectStream } from './predict/detect';
export { val } from './val/val';
export { load, Results } from './predict/hub';
export type {
  CallOptions as HubCallOptions,
  Crop,
  CropOptions,
  DetectionRecord,
  HubModel,
  LoadOptions as HubLoadOptions,
  RenderOptions,
} from './predict/hub';
export type { PruneLayer, PruneResult } from './model/prune';
export { resolveTrainOptions, train, TrainRun } from './train/train';
export type {
  BatchEvent,
  EpochEvent,
  EpochRecord,
  ResolvedTrainOptions,
  TrainEvents,
  TrainOptions,
  TrainResult,
} from './train/train';
export { Run } from './train/run';
export { EVOLVE_DEFAULTS, TRAIN_DEFAULTS } from './options';
export { evolve, EvolveRun, EVOLVE_META, mutateHyp, selectParent } from './train/evolve';
export type {
  EvolveBatchEvent,
  EvolveEpochEvent,
  EvolveEvents,
  EvolveGeneration,
  EvolveKey,
  EvolveOptions,
  EvolveResult,
  EvolveRow,
} from './train/evolve';
export type { Hyp } from './config/hyp';
export type { ClassMetrics, ValMetrics, ValOptions, ValResult } from './val/val';
export { exportModel, EXPORT_FORMATS } from './export';
export type { ExportFormat, ExportOptions, ExportResult } from './export';
export type { Yolov5ExportResult } from './export/yolov5-file';
export { readEvents } from './report/tensorboard';
export { readDataConfig } from './config/data';
export type { DataConfig } from './config/data';
export type {
  Box,
  DetectOptions,
  DetectOutput,
  DetectResult,
  DetectSpeed,
  DetectStream,
  StreamedResult,
  ImageInput,
  RawImage,
} from './predict/detect';
export type {
  ForwardResult,
  LoadModelOptions,
  ModelInfo,
  ParameterInfo,
  StateEntryInfo,
  Tensor,
  TransferReport,
} from './model/model';
export type { LoadEnsembleOptions } from './model/load';
export type { FreezeSpec } from './model/freeze';
export type { ModelConfig } from './config/model';
export { Yolo5Error } from './errors';
export type { Yolo5ErrorCode } from './errors';
export { version, runtimeInfo } from './native/runtime';

export interface NamedParametersOptions extends LoadModelOptions {
  /** Freeze before listing, as training would. */
  freeze?: FreezeSpec;
}

/** Builds a model and lists its parameters (names, shapes, whether each trains). */
export async function namedParameters(opts: NamedParametersOptions): Promise<ParameterInfo[]> {
  const model = await loadModel(opts);
  if (opts.freeze !== undefined) model.freeze(opts.freeze);
  return model.namedParameters();
}

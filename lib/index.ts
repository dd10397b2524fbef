/**
 * yolo5 — YOLOv5 (v7.0) training, validation and detection for Node.js on LibTorch.
 */
import { loadModel, type LoadModelOptions, type ParameterInfo } from './model';
import type { FreezeSpec } from './freeze';

export { loadModel, Model } from './model';
export { Ensemble } from './ensemble';
export type { Predictor } from './ensemble';
export { detect, detectImages } from './detect';
export { val } from './val';
export { load, Results } from './hub';
export type {
  CallOptions as HubCallOptions,
  Crop,
  CropOptions,
  DetectionRecord,
  HubModel,
  LoadOptions as HubLoadOptions,
  RenderOptions,
} from './hub';
export type { PruneLayer, PruneResult } from './prune';
export { train, TrainRun } from './train';
export type { BatchEvent, EpochRecord, TrainOptions, TrainResult } from './train';
export { evolve, EvolveRun, EVOLVE_META, mutateHyp, selectParent } from './evolve';
export type {
  EvolveBatchEvent,
  EvolveEpochEvent,
  EvolveGeneration,
  EvolveKey,
  EvolveOptions,
  EvolveResult,
  EvolveRow,
} from './evolve';
export type { Hyp } from './hyp';
export type { ClassMetrics, ValMetrics, ValOptions, ValResult } from './val';
export { exportModel, EXPORT_FORMATS } from './export';
export type { ExportFormat, ExportOptions, ExportResult } from './export';
export { readDataConfig } from './data';
export type { DataConfig } from './data';
export type {
  Box,
  DetectOptions,
  DetectOutput,
  DetectResult,
  DetectSpeed,
  ImageInput,
  RawImage,
} from './detect';
export type {
  ForwardResult,
  LoadEnsembleOptions,
  LoadModelOptions,
  ModelInfo,
  ParameterInfo,
  StateEntryInfo,
  Tensor,
  TransferReport,
} from './model';
export type { FreezeSpec } from './freeze';
export type { ModelConfig } from './config';
export { Yolo5Error } from './errors';
export type { Yolo5ErrorCode } from './errors';
export { version, runtimeInfo } from './runtime';

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

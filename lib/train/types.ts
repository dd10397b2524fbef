/** The shapes of a training: its options, the resolved options, its records, events and result. */
import type { Hyp } from '../config/hyp';
import type { FreezeSpec } from '../model/freeze';
import type { Model } from '../model/model';
import type { DeviceSpec } from '../native/device';
import type { NativeAmp, NativeBatchProgress } from '../native/addon';
import type { AmpMode, OptimizerName } from '../options';
import type { ValResult } from '../val/val';
import type { DistributedOptions } from './dist';

export interface TrainOptions {
  /** Data yaml; default: the built-in synthetic data set (generated on first use). */
  data?: string;
  /** Model yaml or bundled name; default yolov5s when no weights are given. */
  cfg?: string;
  /** Start from these weights (a Python YOLOv5 .pt, a state dict, or our checkpoint). */
  weights?: string;
  /** Hyp yaml or values; default models/hyps/hyp.scratch-low.yaml. */
  hyp?: string | Partial<Hyp>;
  /**
   * Epochs in all. With `resume`, a new total continues the run to it (the learning-rate
   * schedule is recomputed for it); without, the run's own number holds.
   */
  epochs?: number;
  batch?: number;
  imgsz?: number;
  rect?: boolean;
  /** Sample images by class weights that favour poorly detected classes (after each epoch). */
  imageWeights?: boolean;
  /** Resize each batch to a random 0.5–1.5× imgsz (a stride multiple). */
  multiScale?: boolean;
  /** Continue a run: true (the newest last.pt under runs/train) or a last.pt path. */
  resume?: boolean | string;
  /** Only save the final checkpoint (an interruption still saves the last finished epoch). */
  nosave?: boolean;
  /** Only validate after the final epoch. */
  noval?: boolean;
  /**
   * Write no checkpoints at all and skip the final validation of best.pt; the result's metrics
   * are those of the last epoch's EMA (hyperparameter evolution only needs those).
   */
  noweights?: boolean;
  noautoanchor?: boolean;
  /** Save no plots or mosaics (TensorBoard scalars are still written). */
  noplots?: boolean;
  /** Keep decoded, resized images in memory. */
  cache?: boolean;
  workers?: number;
  optimizer?: OptimizerName;
  cosLr?: boolean;
  labelSmoothing?: number;
  /** Epochs without fitness improvement before stopping. */
  patience?: number;
  /** Layers to freeze: N (first N), [i, j] (those), or name prefixes/globs. */
  freeze?: FreezeSpec;
  /** Also hold frozen layers' BatchNorm statistics (eval mode); by default they still update. */
  freezeBn?: boolean;
  /** Distributed: BatchNorm batch statistics over every rank's batch (SyncBatchNorm). */
  syncBn?: boolean;
  /**
   * Distributed data-parallel training: this process's rank in a group (false: never, whatever
   * the environment says). Absent: torchrun's variables (WORLD_SIZE > 1, RANK, MASTER_ADDR,
   * MASTER_PORT, LOCAL_RANK) when set. Rank 0 logs, validates and writes the run folder.
   */
  distributed?: DistributedOptions | false;
  /** Train in NHWC memory order (default true: faster convolutions on CPU, same numbers). */
  channelsLast?: boolean;
  /**
   * Mixed precision: 'auto' (default: fp16 with loss scaling on CUDA, bf16 on a CPU with bf16
   * hardware, else fp32), 'bf16', 'fp16' (CUDA) or 'off'. Weights, EMA and checkpoints stay fp32.
   */
  amp?: AmpMode;
  seed?: number;
  singleCls?: boolean;
  /** Turn mosaic off for the last N epochs (0: never, as the reference). */
  closeMosaic?: number;
  project?: string;
  name?: string;
  existOk?: boolean;
  /** Threads for LibTorch (default: all cores). */
  threads?: number;
  /** 'cpu' (default), a CUDA index (0) or 'cuda:N'. */
  device?: DeviceSpec;
  /** Stops after the current batch; the last finished epoch is what stays saved. */
  signal?: AbortSignal;
  /** Informational lines (the CLI prints them). */
  log?: (line: string) => void;
}

/** Every option with its value: what `resolveTrainOptions` returns and opt.yaml records. */
export interface ResolvedTrainOptions {
  /** Absent: the built-in synthetic set. */
  data?: string;
  cfg?: string;
  weights?: string;
  hyp?: string | Partial<Hyp>;
  epochs: number;
  batch: number;
  /** As given; training rounds it up to a multiple of the model's stride. */
  imgsz: number;
  rect: boolean;
  imageWeights: boolean;
  multiScale: boolean;
  nosave: boolean;
  noval: boolean;
  noweights: boolean;
  noautoanchor: boolean;
  noplots: boolean;
  cache: boolean;
  workers: number;
  optimizer: OptimizerName;
  cosLr: boolean;
  labelSmoothing: number;
  patience: number;
  freeze?: FreezeSpec;
  freezeBn: boolean;
  syncBn: boolean;
  channelsLast: boolean;
  amp: AmpMode;
  seed: number;
  singleCls: boolean;
  closeMosaic: number;
  project: string;
  name: string;
  existOk: boolean;
  threads: number;
  device?: DeviceSpec;
}

export interface EpochRecord {
  epoch: number;
  box: number;
  obj: number;
  cls: number;
  precision: number;
  recall: number;
  mAP50: number;
  mAP50_95: number;
  fitness: number;
  /** Validation loss (box, obj, cls); zeros when the epoch was not validated. */
  valLoss: [number, number, number];
  lrs: number[];
  seconds: number;
  images: number;
}

export interface TrainResult {
  status: 'completed' | 'aborted' | 'early-stopped' | 'non-finite-loss';
  saveDir: string;
  /** weights/last.pt: present only when the file exists (not with noweights, nor before any epoch finished). */
  last?: string;
  /** weights/best.pt: present only when the file exists. */
  best?: string;
  /** The epochs this call trained. */
  epochs: EpochRecord[];
  bestFitness: number;
  /** The final validation of best.pt (absent with noval when training stopped early). */
  final?: ValResult;
  frozen: string[];
  trainableParameters: number;
  /** The precision the run trained in: `amp` as resolved, or 'off' after a failed AMP self-check. */
  amp: NativeAmp;
  /** The trained model (raw weights) and its EMA (what val and the checkpoints use), in memory. */
  model: Model;
  ema: Model;
}

export interface BatchEvent extends NativeBatchProgress {
  epochs: number;
}

/** After each finished epoch: its record, the run's length and the validation (when it ran). */
export interface EpochEvent extends EpochRecord {
  epochs: number;
  /** The EMA's validation this epoch (absent when the epoch was not validated). */
  val?: ValResult;
  /** This epoch's fitness is the best so far (best.pt is this epoch). */
  best: boolean;
  saveDir: string;
}

export interface ValBatchEvent {
  epoch: number;
  done: number;
  total: number;
}

/** What a training emits: `run.on('epoch', (e) => …)`. */
export type TrainEvents = {
  batch: [BatchEvent];
  epoch: [EpochEvent];
  /** Per-epoch validation progress (batches done of total). */
  valBatch: [ValBatchEvent];
  log: [string];
};

/**
 * Weights files → named tensors for the native model: Python YOLOv5 checkpoints, plain state dicts
 * and our own checkpoints, all through the restricted reader in lib/checkpoint (no code runs).
 */
import * as fs from 'node:fs';
import { loadCheckpoint, toFloat32, type Checkpoint, type HostTensor } from '../checkpoint';
import { Yolo5Error, notDownloadedHint } from '../errors';
import type { ModelConfig } from '../config/model';
import type { TypedData } from '../native/addon';

export interface WeightsFile {
  file: string;
  tensors: { name: string; shape: number[]; data: TypedData }[];
  yaml?: ModelConfig;
  names?: string[];
  nc?: number;
  checkpoint: Checkpoint;
}

/** Float tensors become float32 (half included); integer buffers keep 64-bit values. */
export function toNativeData(t: HostTensor): TypedData {
  switch (t.dtype) {
    case 'int64':
      return t.data;
    case 'int32':
      return t.data;
    case 'uint8':
    case 'bool':
      return t.data;
    default:
      return toFloat32(t);
  }
}

export async function readWeights(file: string): Promise<WeightsFile> {
  if (!fs.existsSync(file))
    throw new Yolo5Error(
      'E_FILE',
      `Weights file ${file} not found. ${notDownloadedHint('weights')}`,
      {
        file,
      },
    );
  const ckpt = await loadCheckpoint(file);
  const tensors = [...ckpt.state.entries()].map(([name, t]) => ({
    name,
    shape: t.shape,
    data: toNativeData(t),
  }));
  const out: WeightsFile = { file, tensors, checkpoint: ckpt };
  if (ckpt.yaml) out.yaml = ckpt.yaml as unknown as ModelConfig;
  if (ckpt.names) out.names = ckpt.names;
  if (ckpt.nc !== undefined) out.nc = ckpt.nc;
  return out;
}

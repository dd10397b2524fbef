/**
 * Weights files → named float tensors. Plain state dicts saved by torch.save are read by
 * LibTorch's own unpickler for now.
 */
import * as fs from 'node:fs';
import { Yolo5Error } from './errors';
import { native, nativeCall, type TypedData } from './native';
import type { ModelConfig } from './config';

export interface WeightsFile {
  file: string;
  tensors: { name: string; shape: number[]; data: TypedData }[];
  yaml?: ModelConfig;
  names?: string[];
  nc?: number;
}

export async function readWeights(file: string): Promise<WeightsFile> {
  if (!fs.existsSync(file))
    throw new Yolo5Error('E_FILE', `Weights file ${file} not found`, { file });
  const tensors = await nativeCall(`reading ${file}`, () => native().loadTensorFile(file));
  return { file, tensors };
}

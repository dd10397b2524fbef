import * as fs from 'node:fs';
import * as path from 'node:path';
import { addonOrigin, native } from './addon';
import { packageRoot } from './paths';

/** This package's version. */
export const version: string = (
  JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

export interface RuntimeInfo {
  version: string;
  libtorch: string;
  /** The LibTorch library file this process runs, where the platform tells. */
  libtorchFile?: string;
  /** The addon binary loaded and what it is. */
  addon: { file: string; kind: string };
  cuda: { available: boolean; deviceCount: number };
  threads: number;
}

/** What the loaded addon runs on. */
export function runtimeInfo(): RuntimeInfo {
  const addon = native();
  const origin = addonOrigin();
  return {
    version,
    libtorch: addon.libtorchVersion,
    libtorchFile: addon.buildInfo().libtorchFile,
    addon: { file: origin?.file ?? '', kind: origin?.kind ?? '' },
    cuda: addon.cudaInfo(),
    threads: addon.getThreads(),
  };
}

import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from './native';
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
  cuda: { available: boolean; deviceCount: number };
  threads: number;
}

/** What the loaded addon runs on. */
export function runtimeInfo(): RuntimeInfo {
  const addon = native();
  return {
    version,
    libtorch: addon.libtorchVersion,
    cuda: addon.cudaInfo(),
    threads: addon.getThreads(),
  };
}

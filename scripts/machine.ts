/** The machine a benchmark or study ran on, as recorded beside its results. */
import * as os from 'node:os';
import { native } from '../lib/native/addon';

export interface MachineDescription {
  cpu: string;
  cores: number;
  memoryGB: number;
  node: string;
  libtorch: string;
  /** LibTorch intra-op threads in use. */
  threads: number;
  cuda: { available: boolean; deviceCount: number };
}

export function describeMachine(): MachineDescription {
  const addon = native();
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    libtorch: addon.libtorchVersion,
    threads: addon.getThreads(),
    cuda: addon.cudaInfo(),
  };
}

/**
 * Distributed data-parallel training: which rank this process is and what that rank does. The
 * group comes from torchrun's variables (WORLD_SIZE > 1 with RANK, LOCAL_RANK, MASTER_ADDR,
 * MASTER_PORT) or `train({ distributed })`; the native side (binding/train/dist.h) only
 * communicates. Rank 0 logs, validates and writes; every rank trains its shard of each epoch.
 */
import { Yolo5Error, show } from '../errors';
import { native, nativeCall, type NativeProcessGroup } from '../native/addon';
import { TRAIN_DEFAULTS } from '../options';

export interface DistributedOptions {
  rank: number;
  worldSize: number;
  /** The device index on this host (CUDA: cuda:localRank). Default 0. */
  localRank?: number;
  /** The host of rank 0, which serves the rendezvous store. */
  masterAddr: string;
  masterPort: number;
  /** Seconds for the rendezvous and every collective (default TRAIN_DEFAULTS.distTimeout). */
  timeout?: number;
}

/** A joined group and this rank's part in the training. */
export interface Distributed {
  group: NativeProcessGroup;
  rank: number;
  worldSize: number;
  localRank: number;
  backend: 'gloo' | 'nccl';
  /** Rank 0: logs, validates, writes checkpoints and the run folder. */
  main: boolean;
  /** "DDP rank R of N (store ADDR:PORT)", as every distributed message starts. */
  who: string;
  masterAddr: string;
  masterPort: number;
}

const VARS = ['RANK', 'MASTER_ADDR', 'MASTER_PORT'] as const;

function fail(message: string, value?: unknown): never {
  throw new Yolo5Error('E_DIST', message, value === undefined ? {} : { value });
}

/** A whole number from an option or variable, or an E_DIST error in the options' pattern. */
function integer(name: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    const what =
      max === Number.MAX_SAFE_INTEGER ? `integer >= ${min}` : `integer between ${min} and ${max}`;
    fail(`Expected ${what} for ${name} but received ${show(value)}`, value);
  }
  return n;
}

function timeoutFrom(value: unknown, name: string): number {
  if (value === undefined) return TRAIN_DEFAULTS.distTimeout;
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0)
    fail(`Expected a positive number of seconds for ${name} but received ${show(value)}`, value);
  return n;
}

/**
 * torchrun's variables as options: undefined when WORLD_SIZE is unset or 1; an E_DIST error
 * naming the variable when one is missing or wrong. YOLO5_DIST_TIMEOUT (seconds) sets the timeout.
 */
export function distributedFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): Required<DistributedOptions> | undefined {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE.trim() === '') return undefined;
  const worldSize = integer('WORLD_SIZE', env.WORLD_SIZE, 1, 65536);
  if (worldSize === 1) return undefined;
  const missing = VARS.filter((k) => env[k] === undefined || env[k]!.trim() === '');
  if (missing.length > 0) {
    fail(
      `WORLD_SIZE=${worldSize} asks for distributed training, which also needs RANK, MASTER_ADDR and MASTER_PORT (as torchrun sets them); missing: ${missing.join(', ')}`,
    );
  }
  return checkDistributed(
    {
      rank: env.RANK as unknown as number,
      worldSize,
      localRank: (env.LOCAL_RANK ?? '0') as unknown as number,
      masterAddr: env.MASTER_ADDR!.trim(),
      masterPort: env.MASTER_PORT as unknown as number,
      timeout: env.YOLO5_DIST_TIMEOUT as unknown as number,
    },
    true,
  );
}

/** Checks `train({ distributed })` (or the environment's values, named as variables). */
export function checkDistributed(d: unknown, fromEnv = false): Required<DistributedOptions> {
  if (typeof d !== 'object' || d === null || Array.isArray(d))
    fail(
      `Expected an object { rank, worldSize, masterAddr, masterPort } for distributed but received ${show(d)}`,
      d,
    );
  const o = d as Record<string, unknown>;
  const name = (api: string, env: string) => (fromEnv ? env : `distributed.${api}`);
  const worldSize = integer(name('worldSize', 'WORLD_SIZE'), o.worldSize, 1, 65536);
  const rank = integer(
    `${name('rank', 'RANK')}${fromEnv ? ` (WORLD_SIZE=${worldSize})` : ''}`,
    o.rank,
    0,
    worldSize - 1,
  );
  const localRank = integer(name('localRank', 'LOCAL_RANK'), o.localRank ?? 0, 0, 65535);
  const masterPort = integer(name('masterPort', 'MASTER_PORT'), o.masterPort, 1, 65535);
  if (
    typeof o.masterAddr !== 'string' ||
    o.masterAddr.trim() === '' ||
    /\s/.test(o.masterAddr.trim())
  )
    fail(
      `Expected a host name or address for ${name('masterAddr', 'MASTER_ADDR')} but received ${show(o.masterAddr)}`,
      o.masterAddr,
    );
  const timeout = timeoutFrom(o.timeout, fromEnv ? 'YOLO5_DIST_TIMEOUT' : 'distributed.timeout');
  return { rank, worldSize, localRank, masterAddr: o.masterAddr.trim(), masterPort, timeout };
}

/** The group of this call: `distributed` (false: none), else the environment's. */
export function resolveDistributed(
  option: DistributedOptions | false | undefined,
): Required<DistributedOptions> | undefined {
  if (option === false) return undefined;
  if (option !== undefined) {
    const d = checkDistributed(option);
    return d.worldSize > 1 ? d : undefined;
  }
  return distributedFromEnv();
}

/** Joins the group (the rendezvous waits for every rank, up to the timeout). */
export async function joinDistributed(
  d: Required<DistributedOptions>,
  device: string,
): Promise<Distributed> {
  const addon = native();
  const info = addon.distInfo();
  const who = `DDP rank ${d.rank} of ${d.worldSize} (store ${d.masterAddr}:${d.masterPort})`;
  if (!info.available) {
    fail(
      `${who}: this build of the addon has no distributed training: the Gloo headers were not found when it was built (Debian/Ubuntu: apt-get install libgloo-dev, then npx yolo5 build)`,
    );
  }
  const backend = device.startsWith('cuda') && info.nccl ? 'nccl' : 'gloo';
  const group = new addon.NativeProcessGroup();
  await nativeCall('joining the process group', () =>
    group.join({ ...d, backend, timeout: d.timeout }),
  );
  return {
    group,
    rank: d.rank,
    worldSize: d.worldSize,
    localRank: d.localRank,
    backend,
    main: d.rank === 0,
    who,
    masterAddr: d.masterAddr,
    masterPort: d.masterPort,
  };
}

/** Rank 0 puts a value (JSON) in the store; every other rank waits for it. */
export async function shareFromMain<T>(
  dist: Distributed | undefined,
  key: string,
  produce: () => Promise<T>,
): Promise<T> {
  if (!dist) return produce();
  if (dist.main) {
    const value = await produce();
    await nativeCall('sharing with the other ranks', () =>
      dist.group.set(key, JSON.stringify(value)),
    );
    return value;
  }
  const text = await nativeCall('waiting for rank 0', () => dist.group.get(key));
  return JSON.parse(text) as T;
}

/** The refusals of the reference (image weights, evolution) and the global batch's split. */
export function checkDistributedTraining(
  dist: Required<DistributedOptions>,
  opts: { batch: number; imageWeights: boolean },
): void {
  const world = `WORLD_SIZE=${dist.worldSize}`;
  if (opts.imageWeights) {
    throw new Yolo5Error(
      'E_ARG',
      `--image-weights (imageWeights) is not supported with distributed training (${world}), as in the reference: drop one of them`,
    );
  }
  if (opts.batch % dist.worldSize !== 0) {
    throw new Yolo5Error(
      'E_ARG',
      `--batch-size (batch) ${opts.batch} is the global batch and must split evenly over ${world} ranks: use a multiple of ${dist.worldSize}`,
      { value: opts.batch },
    );
  }
}

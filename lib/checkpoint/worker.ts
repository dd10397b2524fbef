/**
 * Writes checkpoints on a worker thread: pickling, CRCs and the file write of a large model take
 * longer than an event-loop turn should. Tensor buffers are transferred, not copied, so callers
 * must pass buffers they own (fresh copies from Model.getState()).
 */
import * as path from 'node:path';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import {
  writeCheckpoint,
  type HostTensor,
  type Yolo5CheckpointData,
  type WriteCheckpointOptions,
} from './index';
import { Yolo5Error, fileError, type Yolo5ErrorCode } from '../errors';

interface Job {
  id: number;
  file: string;
  data: Yolo5CheckpointData;
  options: WriteCheckpointOptions;
}

function collectBuffers(value: unknown, out: Set<ArrayBuffer>): void {
  if (value === null || typeof value !== 'object') return;
  if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer) out.add(value.buffer);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collectBuffers(v, out);
    return;
  }
  for (const v of Object.values(value as Record<string, unknown>)) collectBuffers(v, out);
}

let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

function getWorker(): Worker {
  if (worker) return worker;
  worker = new Worker(path.join(__dirname, 'worker.js'));
  worker.unref();
  worker.on('message', (m: { id: number; error?: { message: string; code?: Yolo5ErrorCode } }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(new Yolo5Error(m.error.code ?? 'E_FILE', m.error.message));
    else p.resolve();
    if (pending.size === 0) worker?.unref();
  });
  worker.on('error', (e) => {
    for (const p of pending.values()) p.reject(e);
    pending.clear();
    worker = undefined;
  });
  return worker;
}

/** writeCheckpoint off the main thread; resolves once the file is in place. */
export function writeCheckpointAsync(
  file: string,
  data: Yolo5CheckpointData,
  options: WriteCheckpointOptions = {},
): Promise<void> {
  const w = getWorker();
  w.ref();
  const id = nextId++;
  const buffers = new Set<ArrayBuffer>();
  collectBuffers(data, buffers);
  return new Promise<void>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.postMessage({ id, file, data, options } satisfies Job, [...buffers]);
  });
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on('message', (job: Job) => {
    try {
      writeCheckpoint(job.file, job.data, job.options);
      port.postMessage({ id: job.id });
    } catch (e) {
      // Only Yolo5Error codes cross over: a raw fs error (ENOSPC) becomes one E_FILE line.
      const err = fileError('write the checkpoint', job.file, e);
      port.postMessage({ id: job.id, error: { message: err.message, code: err.code } });
    }
  });
}

export type { HostTensor };

/**
 * Run-folder files written so a kill never leaves half a file: a temporary beside the file,
 * renamed over it (checkpoints: lib/checkpoint's writeCheckpoint and copyCheckpoint). Temporaries
 * a killed process left are removed when a run starts or resumes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileError } from '../errors';

/** Writes `text` to `file` through `<file>.<pid>.tmp` and a rename (one E_FILE line on failure). */
export function writeTextAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw fileError('write', file, e);
  }
}

/** Appends `text` to `file` (one E_FILE line on failure). */
export function appendText(file: string, text: string): void {
  try {
    fs.appendFileSync(file, text);
  } catch (e) {
    throw fileError('write', file, e);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporaries of `names` in `dir` (`name.<pid>.tmp`, and the checkpoint writer's
 * `.name.<pid>.<stamp>.tmp`) whose process is gone; returns the names removed.
 */
export function removeStaleTemporaries(dir: string, names: readonly string[]): string[] {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const e of entries) {
    const m = /^\.?(.+?)\.(\d+)(?:\.[0-9a-z]+)?\.tmp$/.exec(e);
    if (!m || !names.includes(m[1]!)) continue;
    const pid = Number(m[2]);
    if (pid !== process.pid && alive(pid)) continue; // another live process is writing it
    fs.rmSync(path.join(dir, e), { force: true });
    removed.push(e);
  }
  return removed;
}

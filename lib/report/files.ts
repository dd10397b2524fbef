/**
 * Run-folder files written so a kill never leaves half a file: a temporary beside the file,
 * renamed over it. Temporaries a killed process left are removed when a run starts or resumes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Writes `text` to `file` through `<file>.<pid>.tmp` and a rename. */
export function writeTextAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** Copies `from` to `to` through `<to>.<pid>.tmp`; `beforeRename` runs between (a test hook). */
export async function copyFileAtomic(
  from: string,
  to: string,
  beforeRename: () => void = () => {},
): Promise<void> {
  const tmp = `${to}.${process.pid}.tmp`;
  await fs.promises.copyFile(from, tmp);
  beforeRename();
  await fs.promises.rename(tmp, to);
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

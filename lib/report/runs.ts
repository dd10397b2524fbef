/** Run folders: runs/<task>/exp, exp2, exp3, … (or a fixed name with exist-ok). */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface RunDirOptions {
  project?: string;
  name?: string;
  existOk?: boolean;
}

export function makeRunDir(task: string, opts: RunDirOptions = {}): string {
  const project = opts.project ?? path.join('runs', task);
  const name = opts.name ?? 'exp';
  let dir = path.resolve(project, name);
  if (!opts.existOk) {
    for (let n = 2; fs.existsSync(dir); n++) dir = path.resolve(project, `${name}${n}`);
  }
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Run folders: runs/<task>/exp, exp2, exp3, … (or a fixed name with exist-ok). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeDirs } from '../native/paths';

export interface RunDirOptions {
  project?: string;
  name?: string;
  existOk?: boolean;
}

/** Creates the run folder; a path that cannot hold one fails with one E_FILE line naming it. */
export function makeRunDir(task: string, opts: RunDirOptions = {}): string {
  const project = opts.project ?? path.join('runs', task);
  const name = opts.name ?? 'exp';
  let dir = path.resolve(project, name);
  if (!opts.existOk) {
    for (let n = 2; fs.existsSync(dir); n++) dir = path.resolve(project, `${name}${n}`);
  }
  makeDirs(dir, 'run folder');
  return dir;
}

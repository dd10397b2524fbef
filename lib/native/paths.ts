import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Yolo5Error, fileError, fsReason } from '../errors';

let cachedRoot: string | undefined;

/** The folder holding yolo5's package.json, found by walking up from this file (dist/native/ or dist-test/lib/native/). */
export function packageRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (fs.existsSync(candidate)) {
      try {
        const pkg = JSON.parse(fs.readFileSync(candidate, 'utf8')) as { name?: string };
        if (pkg.name === 'yolo5') return (cachedRoot = dir);
      } catch {
        // not ours: keep walking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`yolo5: cannot find the package root above ${__dirname}`);
    dir = parent;
  }
}

/** The bundled model configs (`models/*.yaml`). */
export function modelsDir(): string {
  return path.join(packageRoot(), 'models');
}

/** yolo5's cache folder: YOLO5_CACHE, else ~/.cache/yolo5 (data sets, label verification). */
export function cacheRoot(): string {
  return path.resolve(process.env.YOLO5_CACHE || path.join(os.homedir(), '.cache', 'yolo5'));
}

/**
 * Creates `dir` and its missing parents one level at a time (mkdir -p), failing with one E_FILE
 * line that names the folder and the reason. Not `mkdirSync({ recursive: true })`: that loops
 * forever where mkdir answers ENOENT under an existing parent (/proc), and reports a read-only
 * file system as ENOENT.
 */
export function makeDirs(dir: string, what = 'folder'): void {
  const target = path.resolve(dir);
  const missing: string[] = [];
  let cur = target;
  let st: fs.Stats | undefined;
  // Up to the first existing ancestor: at most one step per path component.
  for (;;) {
    try {
      st = fs.statSync(cur, { throwIfNoEntry: false });
    } catch (e) {
      // ENOTDIR: a file further up; the walk finds and names it.
      if ((e as { code?: string }).code !== 'ENOTDIR')
        throw fileError(`create the ${what}`, target, e);
      st = undefined;
    }
    const parent = path.dirname(cur);
    if (st !== undefined || parent === cur) break;
    missing.unshift(cur);
    cur = parent;
  }
  if (st !== undefined && !st.isDirectory())
    throw new Yolo5Error(
      'E_FILE',
      `Cannot create the ${what} ${target}: ${cur} is a file, not a folder`,
      { file: target },
    );
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      const code = (e as { code?: string }).code;
      // Made meanwhile by another process: fine if it is a folder.
      if (code === 'EEXIST' && fs.statSync(d, { throwIfNoEntry: false })?.isDirectory()) continue;
      // ENOENT although the parent exists: the file system takes no new folders there (/proc).
      const reason =
        code === 'ENOENT'
          ? `${path.dirname(d)} does not allow new folders (ENOENT)`
          : `${d}: ${fsReason(e)}`;
      throw new Yolo5Error('E_FILE', `Cannot create the ${what} ${target}: ${reason}`, {
        file: target,
        cause: e,
      });
    }
  }
}

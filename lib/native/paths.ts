import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

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

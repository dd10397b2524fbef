/** Image sources for detect: a file, a folder, a glob, or a list of those. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Yolo5Error, show } from '../errors';

export const IMAGE_EXTENSIONS = new Set([
  '.jpg',
  '.jpeg',
  '.png',
  '.bmp',
  '.gif',
  '.tga',
  '.pnm',
  '.ppm',
  '.pgm',
]);

export function isImageFile(file: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase());
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
        if (glob[i + 1] === '/') i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[' && glob.indexOf(']', i + 2) > i) {
      // A character class like [0-3] or [!a]: copied with ! as the negation.
      const end = glob.indexOf(']', i + 2);
      const body = glob
        .slice(i + 1, end)
        .replace(/^!/, '^')
        .replace(/\\/g, '\\\\');
      re += `[${body}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function listDir(dir: string, recursive: boolean): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (recursive) out.push(...listDir(p, true));
    } else out.push(p);
  }
  return out;
}

/** Expands sources into image files, sorted within each source; throws when nothing is found. */
export function expandImageSources(sources: string | readonly string[]): string[] {
  const list = typeof sources === 'string' ? [sources] : [...sources];
  const files: string[] = [];
  for (const src of list) {
    if (/[*?[]/.test(src) && !fs.existsSync(src)) {
      // The fixed part before the first wildcard is where the search starts.
      const abs = path.resolve(src);
      const firstWild = abs.search(/[*?[]/);
      const base = abs.slice(0, abs.lastIndexOf(path.sep, firstWild) + 1) || path.sep;
      const re = globToRegExp(abs);
      const found = fs.existsSync(base)
        ? listDir(base, abs.includes('**')).filter((f) => re.test(f))
        : [];
      files.push(...found.filter(isImageFile).sort());
    } else if (fs.existsSync(src) && fs.statSync(src).isDirectory()) {
      files.push(...listDir(src, false).filter(isImageFile).sort());
    } else if (fs.existsSync(src)) {
      files.push(src);
    } else {
      throw new Yolo5Error('E_FILE', `Source ${show(src)} does not exist`, { file: src });
    }
  }
  if (files.length === 0) {
    throw new Yolo5Error(
      'E_ARG',
      `No images found in ${show(sources)} (supported: ${[...IMAGE_EXTENSIONS].join(' ')})`,
      { value: sources },
    );
  }
  return files;
}

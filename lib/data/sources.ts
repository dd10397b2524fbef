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

const VIDEO_EXTENSIONS = new Set([
  '.mp4',
  '.avi',
  '.mov',
  '.mkv',
  '.webm',
  '.wmv',
  '.flv',
  '.m4v',
  '.mpg',
  '.mpeg',
  '.ts',
  '.asf',
  '.gifv',
]);

/** Why the reference's other source kinds (webcam, stream, URL, video) are refused, or undefined. */
export function unsupportedSource(src: string): string | undefined {
  const images = `yolo5 reads image files only (${[...IMAGE_EXTENSIONS].join(' ')}): a file, a folder or a glob`;
  if (/^\d+$/.test(src) && !fs.existsSync(src))
    return `Source ${show(src)} looks like a webcam index: webcams are not supported; ${images}`;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(src))
    return `Source ${show(src)} is a URL or stream: yolo5 downloads nothing and reads no streams; ${images}`;
  if (VIDEO_EXTENSIONS.has(path.extname(src).toLowerCase()) && !/[*?[]/.test(src))
    return `Source ${show(src)} is a video: videos are not supported (extract frames, e.g. with ffmpeg); ${images}`;
  if (src === 'screen' && !fs.existsSync(src))
    return `Source "screen" (screenshots) is not supported; ${images}`;
  return undefined;
}

/** Expands sources into image files, sorted within each source; throws when nothing is found. */
export function expandImageSources(sources: string | readonly string[]): string[] {
  const list = typeof sources === 'string' ? [sources] : [...sources];
  const files: string[] = [];
  for (const src of list) {
    const unsupported = unsupportedSource(src);
    if (unsupported !== undefined) throw new Yolo5Error('E_ARG', unsupported, { value: src });
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

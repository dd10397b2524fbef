/**
 * The drawing surface for plots and mosaics: @napi-rs/canvas (Skia, prebuilt from npm, PNG and
 * JPEG encoders) with DejaVu Sans from @fontsource registered under its own family name, so text
 * renders the same on a machine without system fonts. Loaded on first use only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as Skia from '@napi-rs/canvas';
import { Yolo5Error } from '../errors';

export type Canvas = Skia.Canvas;
export type Context = Skia.SKRSContext2D;

/** The family every plot uses (registered from the npm package, never a system font). */
export const FONT = 'yolo5-dejavu-sans';

let lib: typeof Skia | undefined;

/** The canvas library with the font registered. */
export function skia(): typeof Skia {
  if (lib) return lib;
  let loaded: typeof Skia;
  try {
    loaded = require('@napi-rs/canvas') as typeof Skia;
  } catch (err) {
    throw new Yolo5Error(
      'E_NATIVE',
      `Plots need the @napi-rs/canvas package, which did not load (${(err as Error).message}); reinstall yolo5 or pass --noplots`,
      { cause: err },
    );
  }
  for (const weight of ['400', '700']) {
    const file = require.resolve(
      `@fontsource/dejavu-sans/files/dejavu-sans-latin-${weight}-normal.woff2`,
    );
    if (!loaded.GlobalFonts.registerFromPath(file, FONT))
      throw new Yolo5Error('E_FILE', `Cannot register the plot font ${file}`, { file });
  }
  lib = loaded;
  return lib;
}

/** A canvas filled with `background`. */
export function newCanvas(width: number, height: number, background = '#ffffff'): Canvas {
  const c = skia().createCanvas(Math.round(width), Math.round(height));
  const ctx = c.getContext('2d');
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, c.width, c.height);
  return c;
}

/** `px` pixels of the plot font, bold when asked. */
export function font(px: number, bold = false): string {
  return `${bold ? 'bold ' : ''}${Math.round(px)}px ${FONT}`;
}

/** Encodes by the file's extension (.png, else JPEG at quality 90) and writes it. */
export async function saveCanvas(canvas: Canvas, file: string): Promise<void> {
  const png = path.extname(file).toLowerCase() === '.png';
  const bytes = png ? await canvas.encode('png') : await canvas.encode('jpeg', 90);
  await fs.promises.writeFile(file, bytes);
}

/** RGB bytes (width × height × 3) as a canvas. */
export function canvasFromRgb(data: Uint8Array, width: number, height: number): Canvas {
  const c = skia().createCanvas(width, height);
  const ctx = c.getContext('2d');
  const img = ctx.createImageData(width, height);
  for (let i = 0, j = 0; i < width * height; i++, j += 3) {
    img.data[i * 4] = data[j]!;
    img.data[i * 4 + 1] = data[j + 1]!;
    img.data[i * 4 + 2] = data[j + 2]!;
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/** A colour per class index, distinct for neighbours (hue steps by the golden angle). */
export function classColor(c: number): string {
  const hue = (c * 137.508 + 20) % 360;
  return `hsl(${hue.toFixed(1)}, 85%, ${c % 2 ? 42 : 52}%)`;
}

/**
 * A small line chart rendered to PNG without any drawing library: an RGB canvas, Bresenham-style
 * thick lines, a 5×7 bitmap font, and a PNG writer (zlib from node:zlib, own CRC-32).
 * Used by scripts/freeze-study (mAP per epoch for each --freeze run).
 */
import * as zlib from 'node:zlib';

export interface Series {
  label: string;
  /** [x, y] points, drawn in order. */
  points: [number, number][];
  color: [number, number, number];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** y axis from 0 to at least this (default: the data's maximum). */
  yMax?: number;
}

// 5×7 glyphs: 7 rows of 5 columns ('#' = ink).
const FONT: Record<string, string[]> = {
  '0': [' ### ', '#   #', '#  ##', '# # #', '##  #', '#   #', ' ### '],
  '1': ['  #  ', ' ##  ', '  #  ', '  #  ', '  #  ', '  #  ', ' ### '],
  '2': [' ### ', '#   #', '    #', '   # ', '  #  ', ' #   ', '#####'],
  '3': ['#####', '   # ', '  #  ', '   # ', '    #', '#   #', ' ### '],
  '4': ['   # ', '  ## ', ' # # ', '#  # ', '#####', '   # ', '   # '],
  '5': ['#####', '#    ', '#### ', '    #', '    #', '#   #', ' ### '],
  '6': ['  ## ', ' #   ', '#    ', '#### ', '#   #', '#   #', ' ### '],
  '7': ['#####', '    #', '   # ', '  #  ', ' #   ', ' #   ', ' #   '],
  '8': [' ### ', '#   #', '#   #', ' ### ', '#   #', '#   #', ' ### '],
  '9': [' ### ', '#   #', '#   #', ' ####', '    #', '   # ', ' ##  '],
  A: [' ### ', '#   #', '#   #', '#####', '#   #', '#   #', '#   #'],
  B: ['#### ', '#   #', '#   #', '#### ', '#   #', '#   #', '#### '],
  C: [' ### ', '#   #', '#    ', '#    ', '#    ', '#   #', ' ### '],
  D: ['#### ', '#   #', '#   #', '#   #', '#   #', '#   #', '#### '],
  E: ['#####', '#    ', '#    ', '#### ', '#    ', '#    ', '#####'],
  F: ['#####', '#    ', '#    ', '#### ', '#    ', '#    ', '#    '],
  G: [' ### ', '#   #', '#    ', '# ###', '#   #', '#   #', ' ####'],
  H: ['#   #', '#   #', '#   #', '#####', '#   #', '#   #', '#   #'],
  I: [' ### ', '  #  ', '  #  ', '  #  ', '  #  ', '  #  ', ' ### '],
  J: ['  ###', '   # ', '   # ', '   # ', '   # ', '#  # ', ' ##  '],
  K: ['#   #', '#  # ', '# #  ', '##   ', '# #  ', '#  # ', '#   #'],
  L: ['#    ', '#    ', '#    ', '#    ', '#    ', '#    ', '#####'],
  M: ['#   #', '## ##', '# # #', '# # #', '#   #', '#   #', '#   #'],
  N: ['#   #', '#   #', '##  #', '# # #', '#  ##', '#   #', '#   #'],
  O: [' ### ', '#   #', '#   #', '#   #', '#   #', '#   #', ' ### '],
  P: ['#### ', '#   #', '#   #', '#### ', '#    ', '#    ', '#    '],
  Q: [' ### ', '#   #', '#   #', '#   #', '# # #', '#  # ', ' ## #'],
  R: ['#### ', '#   #', '#   #', '#### ', '# #  ', '#  # ', '#   #'],
  S: [' ####', '#    ', '#    ', ' ### ', '    #', '    #', '#### '],
  T: ['#####', '  #  ', '  #  ', '  #  ', '  #  ', '  #  ', '  #  '],
  U: ['#   #', '#   #', '#   #', '#   #', '#   #', '#   #', ' ### '],
  V: ['#   #', '#   #', '#   #', '#   #', '#   #', ' # # ', '  #  '],
  W: ['#   #', '#   #', '#   #', '# # #', '# # #', '# # #', ' # # '],
  X: ['#   #', '#   #', ' # # ', '  #  ', ' # # ', '#   #', '#   #'],
  Y: ['#   #', '#   #', ' # # ', '  #  ', '  #  ', '  #  ', '  #  '],
  Z: ['#####', '    #', '   # ', '  #  ', ' #   ', '#    ', '#####'],
  '.': ['     ', '     ', '     ', '     ', '     ', ' ##  ', ' ##  '],
  ',': ['     ', '     ', '     ', '     ', ' ##  ', ' ##  ', '#    '],
  '-': ['     ', '     ', '     ', '#####', '     ', '     ', '     '],
  ':': ['     ', ' ##  ', ' ##  ', '     ', ' ##  ', ' ##  ', '     '],
  '/': ['    #', '    #', '   # ', '  #  ', ' #   ', '#    ', '#    '],
  '(': ['   # ', '  #  ', ' #   ', ' #   ', ' #   ', '  #  ', '   # '],
  ')': [' #   ', '  #  ', '   # ', '   # ', '   # ', '  #  ', ' #   '],
  '%': ['##   ', '##  #', '   # ', '  #  ', ' #   ', '#  ##', '   ##'],
  '=': ['     ', '     ', '#####', '     ', '#####', '     ', '     '],
  '+': ['     ', '  #  ', '  #  ', '#####', '  #  ', '  #  ', '     '],
  ' ': ['     ', '     ', '     ', '     ', '     ', '     ', '     '],
};

class Canvas {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = new Uint8Array(width * height * 3).fill(255);
  }

  set(x: number, y: number, c: readonly number[]): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 3;
    this.data[i] = c[0]!;
    this.data[i + 1] = c[1]!;
    this.data[i + 2] = c[2]!;
  }

  rect(x0: number, y0: number, w: number, h: number, c: readonly number[]): void {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) this.set(x, y, c);
  }

  /** A line `thick` pixels wide: a square brush stepped along the longer axis. */
  line(x0: number, y0: number, x1: number, y1: number, c: readonly number[], thick = 1): void {
    const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    const r = Math.floor(thick / 2);
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) this.set(x + dx, y + dy, c);
    }
  }

  /**
   * Text in the 5×7 font at `scale` pixels per dot, left to right from (x, y) or, with `up`,
   * bottom to top from (x, y) (a y-axis label). Returns the length drawn along the text.
   */
  text(x: number, y: number, s: string, c: readonly number[], scale = 2, up = false): number {
    let along = 0;
    for (const ch of s.toUpperCase()) {
      const glyph = FONT[ch] ?? FONT[' ']!;
      for (let row = 0; row < 7; row++)
        for (let col = 0; col < 5; col++) {
          if (glyph[row]![col] !== '#') continue;
          const dx = along + col * scale;
          const dy = row * scale;
          if (up) this.rect(x + dy, y - dx, scale, scale, c);
          else this.rect(x + dx, y + dy, scale, scale, c);
        }
      along += 6 * scale;
    }
    return along;
  }
}

export function textWidth(s: string, scale = 2): number {
  return s.length * 6 * scale;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bufs: Buffer[]): number {
  let c = 0xffffffff;
  for (const b of bufs) for (const byte of b) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const t = Buffer.from(type, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32([t, data]));
  return Buffer.concat([len, t, data, crc]);
}

/** RGB pixels → PNG (8-bit truecolour, filter 0 on every row). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0;
    Buffer.from(rgb.buffer, rgb.byteOffset + y * width * 3, width * 3).copy(
      raw,
      y * (width * 3 + 1) + 1,
    );
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function formatTick(v: number, step: number): string {
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(decimals);
}

/** Renders the series as a PNG line chart with axes, ticks, a title and a legend. */
export function lineChartPng(series: Series[], o: ChartOptions): Buffer {
  const W = o.width ?? 1060;
  const H = o.height ?? 540;
  const c = new Canvas(W, H);
  const ink = [40, 40, 40];
  const grid = [225, 225, 225];
  const left = 90;
  const legendWidth = 12 + Math.max(...series.map((s) => textWidth(s.label))) + 48;
  const right = legendWidth + 20;
  const top = 60;
  const bottom = 70;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs, xMin + 1);
  const yTop = Math.max(o.yMax ?? 0, ...ys, 1e-9);
  const yStep = niceStep(yTop, 6);
  const yMax = Math.ceil(yTop / yStep - 1e-9) * yStep;
  const xStep = Math.max(1, niceStep(xMax - xMin, 10));
  const px = (x: number): number => left + ((x - xMin) / (xMax - xMin)) * pw;
  const py = (y: number): number => top + ph - (y / yMax) * ph;

  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    c.line(left, py(v), left + pw, py(v), grid);
    const label = formatTick(v, yStep);
    c.text(left - 10 - textWidth(label), py(v) - 7, label, ink);
  }
  for (let v = Math.ceil(xMin / xStep) * xStep; v <= xMax + 1e-9; v += xStep) {
    c.line(px(v), top, px(v), top + ph, grid);
    const label = formatTick(v, xStep);
    c.text(px(v) - textWidth(label) / 2, top + ph + 10, label, ink);
  }
  c.line(left, top, left, top + ph, ink, 2);
  c.line(left, top + ph, left + pw, top + ph, ink, 2);
  const titleScale = textWidth(o.title, 3) <= W - 20 ? 3 : 2;
  c.text((W - textWidth(o.title, titleScale)) / 2, 15, o.title, ink, titleScale);
  c.text(left + (pw - textWidth(o.xLabel)) / 2, H - 30, o.xLabel, ink);
  c.text(20, top + (ph + textWidth(o.yLabel)) / 2, o.yLabel, ink, 2, true);

  for (const s of series) {
    for (let i = 1; i < s.points.length; i++) {
      const [x0, y0] = s.points[i - 1]!;
      const [x1, y1] = s.points[i]!;
      c.line(px(x0), py(y0), px(x1), py(y1), s.color, 3);
    }
    for (const [x, y] of s.points)
      c.rect(Math.round(px(x)) - 3, Math.round(py(y)) - 3, 7, 7, s.color);
  }
  // Legend, right of the plot.
  let ly = top + 12;
  const lx = left + pw + 20;
  for (const s of series) {
    c.rect(lx, ly + 3, 24, 8, s.color);
    c.text(lx + 32, ly, s.label, ink);
    ly += 24;
  }
  return encodePng(W, H, c.data);
}

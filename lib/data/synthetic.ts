/**
 * Built-in synthetic detection data sets: coloured shapes on textured backgrounds with exact YOLO
 * labels, generated deterministically (own seeded PRNG, one stream per image) into a cache folder
 * on first use, then reused. Pixel work is plain TypeScript on RGB buffers; JPEGs are written by
 * the native addon.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cacheRoot, makeDirs } from '../native/paths';
import { Yolo5Error, show } from '../errors';
import { native } from '../native/addon';

/** 'a': vivid flat shapes on muted gradients with noise/stripes/checker; 'b': pastel or neon
 * outlined, shaded shapes on dark radial gradients with marble/dots/rings/hatching; 'mix' (the
 * pretraining set): per image one of several palettes and tones over either kind of background,
 * per object one of eight fills, unlabelled clutter under and occluders over the objects, objects
 * from 4% to 50% of the side. */
export type SyntheticStyle = 'a' | 'b' | 'mix';

export interface SyntheticSpec {
  /** Folder name under the cache root, e.g. 'shapes-a'. */
  name: string;
  /** Class names (index = class id); each names the shape drawn, one of SYNTHETIC_SHAPES. */
  classes: string[];
  /** Number of train images. */
  train: number;
  /** Number of val images. */
  val: number;
  /** Image side in pixels (square). */
  size: number;
  seed: number;
  /** How objects and backgrounds look. */
  style: SyntheticStyle;
}

/** The shapes a spec's classes may name. */
export const SYNTHETIC_SHAPES = [
  'circle',
  'square',
  'triangle',
  'cross',
  'star',
  'ring',
  'diamond',
  'hexagon',
  'arrow',
  'heart',
  'pentagon',
  'octagon',
  'ellipse',
  'semicircle',
  'crescent',
  'trapezoid',
  'parallelogram',
  'bar',
  'chevron',
  'ell',
  'tee',
  'star4',
  'hexagram',
  'teardrop',
  'bolt',
  'hourglass',
  'gear',
  'flower',
  'frame',
  'quarter',
  'arch',
] as const;
export type SyntheticShape = (typeof SYNTHETIC_SHAPES)[number];

/** The first built-in data set (five flat shapes; benchmarks train on it). */
export const SHAPES_A: SyntheticSpec = {
  name: 'shapes-a',
  classes: ['circle', 'square', 'triangle', 'cross', 'star'],
  train: 480,
  val: 96,
  size: 256,
  seed: 1,
  style: 'a',
};

/**
 * The built-in target set for transfer learning (`yolo5 train` without --data fine-tunes the
 * bundled model on it): shapes that neither SHAPES_A nor SHAPES_PRETRAIN has, in style 'b'.
 */
export const SHAPES_B: SyntheticSpec = {
  name: 'shapes-b',
  classes: ['ring', 'diamond', 'hexagon', 'arrow', 'heart'],
  train: 240,
  val: 64,
  size: 256,
  seed: 2,
  style: 'b',
};

/**
 * The pretraining set the bundled models/yolov5n-shapes.pt was trained on (scripts/pretrain.ts):
 * 24 shape classes in every look of style 'mix'. None of SHAPES_B's classes is among them, so
 * fine-tuning on B (the default job) learns classes the pretraining never saw.
 */
export const SHAPES_PRETRAIN: SyntheticSpec = {
  name: 'shapes-pretrain',
  classes: [
    'circle',
    'square',
    'triangle',
    'cross',
    'star',
    'pentagon',
    'octagon',
    'ellipse',
    'semicircle',
    'crescent',
    'trapezoid',
    'parallelogram',
    'bar',
    'chevron',
    'ell',
    'tee',
    'star4',
    'hexagram',
    'teardrop',
    'bolt',
    'hourglass',
    'gear',
    'flower',
    'frame',
  ],
  train: 2000,
  val: 200,
  size: 256,
  seed: 3,
  style: 'mix',
};

/** One rendered image and its labels (rows class, cx, cy, w, h normalised to 0…1). */
export interface SyntheticImage {
  width: number;
  height: number;
  /** RGB, row-major, 3 bytes per pixel. */
  data: Uint8Array;
  labels: number[][];
}

// Part of the spec hash: bump when the pixels or labels a spec produces change.
const GENERATOR_VERSION = 1;
const MAX_OBJECTS = 6;
// Objects' extent as a fraction of the image side.
const MIN_SIZE = 0.08;
const MAX_SIZE = 0.45;
// Least share of an object's pixels that must stay visible (inside the image, not covered).
const MIN_VISIBLE = 0.7;
// Writes queued to the native encoder at once: JS draws the next images while it encodes.
const WRITES_IN_FLIGHT = 4;

/** `$YOLO5_CACHE/datasets`, else `~/.cache/yolo5/datasets`. */
export function syntheticCacheDir(): string {
  return path.join(cacheRoot(), 'datasets');
}

// ---------------------------------------------------------------------------------------------
// Randomness: mulberry32 streams, seeded per image so images do not depend on each other.

class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** Integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
}

/** Mixes 32-bit words into one seed (murmur3 finaliser per word). */
function hash32(words: number[]): number {
  let h = 0x9e3779b9;
  for (const w of words) {
    h = Math.imul(h ^ (w >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Shapes: contours in unit coordinates (extent about [-1, 1], y down), filled even-odd.

type Contour = number[]; // x0, y0, x1, y1, …

function regular(n: number, r: number, start: number): Contour {
  const c: Contour = [];
  for (let k = 0; k < n; k++) {
    const a = start + (2 * Math.PI * k) / n;
    c.push(r * Math.cos(a), r * Math.sin(a));
  }
  return c;
}

function star(points: number, outer: number, inner: number): Contour {
  const c: Contour = [];
  for (let k = 0; k < 2 * points; k++) {
    const a = -Math.PI / 2 + (Math.PI * k) / points;
    const r = k % 2 === 0 ? outer : inner;
    c.push(r * Math.cos(a), r * Math.sin(a));
  }
  return c;
}

function heart(): Contour {
  const xs: number[] = [];
  const ys: number[] = [];
  for (let k = 0; k < 96; k++) {
    const t = (2 * Math.PI * k) / 96;
    xs.push(16 * Math.sin(t) ** 3);
    ys.push(-(13 * Math.cos(t) - 5 * Math.cos(2 * t) - 2 * Math.cos(3 * t) - Math.cos(4 * t)));
  }
  // Centre its box and scale the longer half-extent to 1.
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const s = 2 / Math.max(x1 - x0, y1 - y0);
  const c: Contour = [];
  for (let k = 0; k < xs.length; k++)
    c.push((xs[k]! - (x0 + x1) / 2) * s, (ys[k]! - (y0 + y1) / 2) * s);
  return c;
}

/** Centres the contours' box at 0 and scales the longer half-extent to 1. */
function normalised(contours: Contour[]): Contour[] {
  const xs = contours.flatMap((c) => c.filter((_, i) => i % 2 === 0));
  const ys = contours.flatMap((c) => c.filter((_, i) => i % 2 === 1));
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const s = 2 / Math.max(x1 - x0, y1 - y0);
  return contours.map((c) =>
    c.map((v, i) => (v - (i % 2 === 0 ? (x0 + x1) / 2 : (y0 + y1) / 2)) * s),
  );
}

/** Points (r(θ)·cos θ, r(θ)·sin θ) for `n` angles from `from` to `to` (excluded when a full turn). */
function polar(n: number, r: (a: number) => number, from = 0, to = 2 * Math.PI): Contour {
  const c: Contour = [];
  const full = Math.abs(to - from - 2 * Math.PI) < 1e-9;
  for (let k = 0; k < n; k++) {
    const a = from + ((to - from) * k) / (full ? n : n - 1);
    c.push(r(a) * Math.cos(a), r(a) * Math.sin(a));
  }
  return c;
}

function gear(teeth: number): Contour {
  const c: Contour = [];
  const step = (2 * Math.PI) / teeth;
  for (let k = 0; k < teeth; k++) {
    const a = k * step;
    for (const [da, r] of [
      [-0.32, 0.74],
      [-0.18, 1],
      [0.18, 1],
      [0.32, 0.74],
    ] as const)
      c.push(r * Math.cos(a + da * step), r * Math.sin(a + da * step));
  }
  return c;
}

/** The pretraining set's shapes (contours as for shapeContours). */
function moreShapeContours(shape: SyntheticShape): Contour[] {
  const one = (c: Contour) => normalised([c]);
  switch (shape) {
    case 'pentagon':
      return one(regular(5, 1, -Math.PI / 2));
    case 'octagon':
      return [regular(8, 1, Math.PI / 8)];
    case 'ellipse':
      return one(polar(96, () => 1).map((v, i) => (i % 2 ? v * 0.55 : v)));
    case 'semicircle':
      return one(polar(48, () => 1, Math.PI, 2 * Math.PI));
    case 'crescent': {
      const outer = polar(48, () => 1, Math.PI / 2, (3 * Math.PI) / 2);
      const inner: Contour = [];
      for (let k = 1; k < 47; k++) {
        const a = -Math.PI / 2 + (Math.PI * k) / 47;
        inner.push(-0.45 * Math.cos(a), -Math.sin(a));
      }
      return one([...outer, ...inner]);
    }
    case 'trapezoid':
      return one([-1, 0.6, 1, 0.6, 0.5, -0.6, -0.5, -0.6]);
    case 'parallelogram':
      return one([-1, 0.5, 0.4, 0.5, 1, -0.5, -0.4, -0.5]);
    case 'bar':
      return [[-1, -0.38, 1, -0.38, 1, 0.38, -1, 0.38]];
    case 'chevron':
      return one([-1, 0.5, 0, -0.6, 1, 0.5, 0.6, 0.75, 0, 0, -0.6, 0.75]);
    case 'ell':
      return [[-1, -1, -0.4, -1, -0.4, 0.4, 1, 0.4, 1, 1, -1, 1]];
    case 'tee':
      return [[-1, -1, 1, -1, 1, -0.45, 0.28, -0.45, 0.28, 1, -0.28, 1, -0.28, -0.45, -1, -0.45]];
    case 'star4':
      return [star(4, 1, 0.38)];
    case 'hexagram':
      return one(star(6, 1, 0.58));
    case 'teardrop': {
      const c: Contour = [];
      for (let k = 0; k < 96; k++) {
        const t = (2 * Math.PI * k) / 96;
        c.push(Math.sin(t) * Math.sin(t / 2), -Math.cos(t)); // cusp at t = 0
      }
      return one(c);
    }
    case 'bolt':
      return one([-0.2, -1, 0.6, -1, 0.15, -0.15, 0.65, -0.15, -0.35, 1, 0, 0.1, -0.5, 0.1]);
    case 'hourglass':
      return [[-1, -1, 1, -1, 0.15, 0, 1, 1, -1, 1, -0.15, 0]];
    case 'gear':
      return [gear(8)];
    case 'flower':
      return [polar(120, (a) => 0.45 + 0.55 * Math.abs(Math.cos(2.5 * a)))];
    case 'frame':
      return [regular(4, 1, Math.PI / 4), regular(4, 0.6, Math.PI / 4)];
    case 'quarter':
      return one([0, 0, ...polar(32, () => 1, 0, Math.PI / 2)]);
    case 'arch':
      return [[-1, -1, -0.45, -1, -0.45, 0.45, 0.45, 0.45, 0.45, -1, 1, -1, 1, 1, -1, 1]];
    default:
      throw new Error(`no contour for ${shape}`);
  }
}

function shapeContours(shape: SyntheticShape): Contour[] {
  const w = 0.32; // cross arm half-width
  switch (shape) {
    case 'circle':
      return [regular(96, 1, 0)];
    case 'square':
      return [regular(4, 1, Math.PI / 4)];
    case 'triangle':
      return [regular(3, 1, -Math.PI / 2)];
    case 'cross':
      return [[-w, -1, w, -1, w, -w, 1, -w, 1, w, w, w, w, 1, -w, 1, -w, w, -1, w, -1, -w, -w, -w]];
    case 'star':
      return [star(5, 1, 0.42)];
    case 'ring':
      return [regular(96, 1, 0), regular(96, 0.56, 0)];
    case 'diamond':
      return [[0, -1, 0.62, 0, 0, 1, -0.62, 0]];
    case 'hexagon':
      return [regular(6, 1, 0)];
    case 'arrow':
      return [[-1, -0.2, 0.15, -0.2, 0.15, -0.58, 1, 0, 0.15, 0.58, 0.15, 0.2, -1, 0.2]];
    case 'heart':
      return [heart()];
    default:
      return moreShapeContours(shape);
  }
}

const contourCache = new Map<SyntheticShape, Contour[]>();
function contoursOf(shape: SyntheticShape): Contour[] {
  let c = contourCache.get(shape);
  if (!c) contourCache.set(shape, (c = shapeContours(shape)));
  return c;
}

/** A rasterised object: its mask over its (unclipped) pixel box. */
interface Mask {
  x0: number;
  y0: number;
  w: number;
  h: number;
  bits: Uint8Array;
  total: number;
}

/** Fills the pixels whose centres lie inside the contours (even-odd), row by row. */
function rasterise(contours: Float64Array[]): Mask {
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (const c of contours) {
    for (let i = 0; i < c.length; i += 2) {
      minX = Math.min(minX, c[i]!);
      maxX = Math.max(maxX, c[i]!);
      minY = Math.min(minY, c[i + 1]!);
      maxY = Math.max(maxY, c[i + 1]!);
    }
  }
  const x0 = Math.floor(minX);
  const y0 = Math.floor(minY);
  const w = Math.ceil(maxX) - x0 + 1;
  const h = Math.ceil(maxY) - y0 + 1;
  const bits = new Uint8Array(w * h);
  const xs: number[] = [];
  let total = 0;
  for (let r = 0; r < h; r++) {
    const py = y0 + r + 0.5;
    xs.length = 0;
    for (const c of contours) {
      const n = c.length;
      for (let i = 0; i < n; i += 2) {
        const ay = c[i + 1]!;
        const j = (i + 2) % n;
        const by = c[j + 1]!;
        // Half-open crossing test: a vertex on the scan line counts once.
        if (ay <= py !== by <= py) {
          const ax = c[i]!;
          xs.push(ax + ((py - ay) * (c[j]! - ax)) / (by - ay));
        }
      }
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // Pixel i (centre x0 + i + 0.5) is inside when xa <= centre < xb.
      const from = Math.max(0, Math.ceil(xs[k]! - x0 - 0.5));
      const to = Math.min(w, Math.ceil(xs[k + 1]! - x0 - 0.5));
      for (let i = from; i < to; i++) bits[r * w + i] = 1;
      if (to > from) total += to - from;
    }
  }
  return { x0, y0, w, h, bits, total };
}

/** Pixels of the mask within `width` (4-neighbour steps) of its outside. */
function borderOf(m: Mask, width: number): Uint8Array {
  let inner = m.bits;
  for (let k = 0; k < width; k++) {
    const next = new Uint8Array(inner.length);
    for (let r = 0; r < m.h; r++) {
      for (let c = 0; c < m.w; c++) {
        const i = r * m.w + c;
        next[i] =
          inner[i] &&
          c > 0 &&
          c < m.w - 1 &&
          r > 0 &&
          r < m.h - 1 &&
          inner[i - 1] &&
          inner[i + 1] &&
          inner[i - m.w] &&
          inner[i + m.w]
            ? 1
            : 0;
      }
    }
    inner = next;
  }
  const border = new Uint8Array(m.bits.length);
  for (let i = 0; i < border.length; i++) border[i] = m.bits[i]! & (inner[i]! ^ 1);
  return border;
}

// ---------------------------------------------------------------------------------------------
// Colour.

type RGB = [number, number, number];

function hsv(h: number, s: number, v: number): RGB {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const [r, g, b] = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ][((i % 6) + 6) % 6]!;
  return [r! * 255, g! * 255, b! * 255];
}

function luma(c: RGB): number {
  return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
}

function backgroundColour(rng: Rng, style: 'a' | 'b'): RGB {
  return style === 'a'
    ? hsv(rng.next(), rng.range(0.05, 0.45), rng.range(0.3, 0.9))
    : hsv(rng.next(), rng.range(0.4, 0.85), rng.range(0.1, 0.5));
}

function objectColour(rng: Rng, style: 'a' | 'b'): RGB {
  if (style === 'a') return hsv(rng.next(), rng.range(0.55, 1), rng.range(0.45, 1));
  // Pastel or neon.
  return rng.next() < 0.5
    ? hsv(rng.next(), rng.range(0.15, 0.45), rng.range(0.85, 1))
    : hsv(rng.next(), rng.range(0.8, 1), rng.range(0.9, 1));
}

/** The candidate colour that stands out most from `under` (first one clearly contrasting). */
function contrastingColour(rng: Rng, style: 'a' | 'b', under: RGB): RGB {
  let best: RGB = [0, 0, 0];
  let bestScore = -1;
  for (let k = 0; k < 16; k++) {
    const c = objectColour(rng, style);
    const dl = Math.abs(luma(c) - luma(under));
    const dc = Math.hypot(c[0] - under[0], c[1] - under[1], c[2] - under[2]);
    const score = dl + 0.35 * dc;
    if (score > bestScore) {
      best = c;
      bestScore = score;
    }
    if (dl >= 60 && dc >= 110) break;
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Backgrounds: a base gradient between two colours, blended towards a third by a texture.

function smooth(t: number): number {
  return t * t * (3 - 2 * t);
}

/** Adds `weight` × value noise with cells of `cell` pixels to `out` (size × size). */
function addValueNoise(rng: Rng, size: number, cell: number, weight: number, out: Float32Array) {
  const gw = Math.ceil(size / cell) + 2;
  const grid = new Float32Array(gw * gw);
  for (let i = 0; i < grid.length; i++) grid[i] = rng.next();
  const ix = new Int32Array(size);
  const tx = new Float32Array(size);
  for (let x = 0; x < size; x++) {
    const f = x / cell;
    ix[x] = Math.floor(f);
    tx[x] = smooth(f - ix[x]!);
  }
  for (let y = 0; y < size; y++) {
    const gy = ix[y]!;
    const ty = tx[y]!;
    const row0 = gy * gw;
    const row1 = row0 + gw;
    for (let x = 0; x < size; x++) {
      const gx = ix[x]!;
      const t = tx[x]!;
      const a = grid[row0 + gx]! + (grid[row0 + gx + 1]! - grid[row0 + gx]!) * t;
      const b = grid[row1 + gx]! + (grid[row1 + gx + 1]! - grid[row1 + gx]!) * t;
      out[y * size + x] += weight * (a + (b - a) * ty);
    }
  }
}

/** Fractal value noise in [0, 1], contrast-stretched. */
function fbm(rng: Rng, size: number, cell: number): Float32Array {
  const out = new Float32Array(size * size);
  addValueNoise(rng, size, cell, 0.6, out);
  addValueNoise(rng, size, Math.max(2, cell / 2), 0.3, out);
  addValueNoise(rng, size, Math.max(2, cell / 4), 0.1, out);
  for (let i = 0; i < out.length; i++)
    out[i] = Math.min(1, Math.max(0, (out[i]! - 0.5) * 1.8 + 0.5));
  return out;
}

function renderBackground(rng: Rng, style: 'a' | 'b', size: number, rgb: Uint8ClampedArray) {
  const n = size * size;
  const grad = new Float32Array(n);
  let tex: Float32Array = new Float32Array(n);
  const angle = rng.range(0, 2 * Math.PI);
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const half = size / 2;
  if (style === 'a') {
    // Linear gradient along a random direction.
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const g = 0.5 + ((x - half) * cos + (y - half) * sin) / size;
        grad[y * size + x] = g < 0 ? 0 : g > 1 ? 1 : g;
      }
  } else {
    // Radial gradient from a random centre.
    const cx = rng.range(0, size);
    const cy = rng.range(0, size);
    const reach = size * rng.range(0.6, 1.1);
    // Math.sqrt rather than Math.hypot in pixel loops: hypot is several times slower.
    for (let y = 0; y < size; y++) {
      const dy2 = (y - cy) * (y - cy);
      for (let x = 0; x < size; x++)
        grad[y * size + x] = Math.min(1, Math.sqrt((x - cx) * (x - cx) + dy2) / reach);
    }
  }
  const kind = rng.int(0, style === 'a' ? 2 : 3);
  const period = rng.range(0.025, 0.16) * size;
  if (style === 'a' && kind === 0) {
    tex = fbm(rng, size, size / rng.range(2, 6));
  } else if (style === 'a' && kind === 1) {
    // Soft stripes.
    const phase = rng.range(0, 2 * Math.PI);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        tex[y * size + x] =
          0.5 + 0.5 * Math.sin(((x * cos + y * sin) * 2 * Math.PI) / period + phase);
  } else if (style === 'a') {
    // Checker on rotated axes.
    const a2 = rng.range(0, Math.PI / 2);
    const c2 = Math.cos(a2);
    const s2 = Math.sin(a2);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const u = Math.floor((x * c2 + y * s2) / period);
        const v = Math.floor((y * c2 - x * s2) / period);
        tex[y * size + x] = (u + v) & 1;
      }
  } else if (kind === 0) {
    // Marble: stripes warped by noise.
    const warp = fbm(rng, size, size / rng.range(2, 4));
    const strength = rng.range(3, 8);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        tex[i] =
          0.5 +
          0.5 * Math.sin(((x * cos + y * sin) * 2 * Math.PI) / (period * 2) + strength * warp[i]!);
      }
  } else if (kind === 1) {
    // Polka dots on a staggered grid.
    const step = Math.max(4, period * 1.5);
    const r2 = (step * rng.range(0.18, 0.36)) ** 2;
    const ox = rng.range(0, step);
    const oy = rng.range(0, step);
    for (let y = 0; y < size; y++) {
      const rowIndex = Math.floor((y + oy) / step);
      const dy = ((y + oy) % step) - step / 2;
      const shift = rowIndex & 1 ? step / 2 : 0;
      for (let x = 0; x < size; x++) {
        const dx = ((x + ox + shift) % step) - step / 2;
        tex[y * size + x] = dx * dx + dy * dy < r2 ? 1 : 0;
      }
    }
  } else if (kind === 2) {
    // Concentric rings around a random point.
    const cx = rng.range(-0.5, 1.5) * size;
    const cy = rng.range(-0.5, 1.5) * size;
    const k = (2 * Math.PI) / period;
    for (let y = 0; y < size; y++) {
      const dy2 = (y - cy) * (y - cy);
      for (let x = 0; x < size; x++)
        tex[y * size + x] = 0.5 + 0.5 * Math.sin(Math.sqrt((x - cx) * (x - cx) + dy2) * k);
    }
  } else {
    // Cross-hatching: thin lines along two directions.
    const step = Math.max(4, period);
    const line = Math.max(1, step * rng.range(0.12, 0.3));
    const a2 = angle + rng.range(Math.PI / 3, (2 * Math.PI) / 3);
    const c2 = Math.cos(a2);
    const s2 = Math.sin(a2);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const u = x * cos + y * sin + size * 4;
        const v = x * c2 + y * s2 + size * 4;
        tex[y * size + x] = u % step < line || v % step < line ? 1 : 0;
      }
  }
  const c0 = backgroundColour(rng, style);
  const c1 = backgroundColour(rng, style);
  const ct =
    style === 'a'
      ? backgroundColour(rng, style)
      : hsv(rng.next(), rng.range(0.2, 0.7), rng.range(0.3, 0.75));
  const amp = style === 'a' ? rng.range(0.2, 0.5) : rng.range(0.25, 0.55);
  const grain = style === 'a' ? 10 : 18;
  for (let i = 0; i < n; i++) {
    const g = grad[i]!;
    const t = tex[i]! * amp;
    const e = (rng.next() - 0.5) * grain;
    const r = c0[0] + (c1[0] - c0[0]) * g;
    const gg = c0[1] + (c1[1] - c0[1]) * g;
    const b = c0[2] + (c1[2] - c0[2]) * g;
    rgb[i * 3] = r + (ct[0] - r) * t + e;
    rgb[i * 3 + 1] = gg + (ct[1] - gg) * t + e;
    rgb[i * 3 + 2] = b + (ct[2] - b) * t + e;
  }
}

// ---------------------------------------------------------------------------------------------
// One image.

function checkSpec(spec: SyntheticSpec): SyntheticShape[] {
  const bad = (what: string, value: unknown) =>
    new Yolo5Error('E_ARG', `synthetic data set ${show(spec.name)}: ${what}, got ${show(value)}`, {
      value,
    });
  if (typeof spec.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(spec.name))
    throw bad('name must be letters, digits, - and _', spec.name);
  if (!Array.isArray(spec.classes) || spec.classes.length === 0 || spec.classes.length > 255)
    throw bad('classes must list 1 to 255 shape names', spec.classes);
  for (const c of spec.classes)
    if (!(SYNTHETIC_SHAPES as readonly string[]).includes(c))
      throw bad(`each class must be one of ${SYNTHETIC_SHAPES.join(', ')}`, c);
  if (new Set(spec.classes).size !== spec.classes.length)
    throw bad('classes must not repeat', spec.classes);
  for (const key of ['train', 'val'] as const)
    if (!Number.isInteger(spec[key]) || spec[key] < 1 || spec[key] > 1_000_000)
      throw bad(`${key} must be an integer in 1…1000000`, spec[key]);
  if (!Number.isInteger(spec.size) || spec.size < 32 || spec.size > 4096)
    throw bad('size must be an integer in 32…4096', spec.size);
  if (!Number.isSafeInteger(spec.seed)) throw bad('seed must be an integer', spec.seed);
  if (spec.style !== 'a' && spec.style !== 'b' && spec.style !== 'mix')
    throw bad("style must be 'a', 'b' or 'mix'", spec.style);
  return spec.classes as SyntheticShape[];
}

/** Image `index`'s own random stream: images do not depend on each other. */
function imageRng(spec: SyntheticSpec, split: 'train' | 'val', index: number): Rng {
  const style = { a: 1, b: 2, mix: 3 }[spec.style];
  const seed = [spec.seed >>> 0, Math.floor(spec.seed / 4294967296) >>> 0];
  return new Rng(hash32([...seed, style, split === 'train' ? 1 : 2, index]));
}

/** Renders image `index` of a split: the same spec, split and index always give the same bytes. */
export function renderSyntheticImage(
  spec: SyntheticSpec,
  split: 'train' | 'val',
  index: number,
): SyntheticImage {
  const shapes = checkSpec(spec);
  if (spec.style === 'mix') return renderMixImage(spec, shapes, split, index);
  const { size, style } = spec;
  const rng = imageRng(spec, split, index);
  const rgb = new Uint8ClampedArray(size * size * 3);
  renderBackground(rng, style, size, rgb);
  // Which object (1-based) each pixel shows, 0 for background: labels come from it.
  const owner = new Uint8Array(size * size);
  const full: number[] = [0]; // every object's pixel count, inside the image or not
  const visible: number[] = [0]; // its pixels still showing
  const classes: number[] = [-1];
  const wanted = rng.int(1, MAX_OBJECTS);
  const covered = new Int32Array(MAX_OBJECTS + 1);
  for (let attempt = 0; attempt < wanted * 12 && classes.length <= wanted; attempt++) {
    const cls = rng.int(0, shapes.length - 1);
    const extent = size * rng.range(MIN_SIZE, MAX_SIZE);
    const r = extent / 2;
    const aspect = rng.range(0.85, 1.15);
    const angle = rng.next() < (style === 'a' ? 0.6 : 1) ? rng.range(0, 2 * Math.PI) : 0;
    const cx = rng.range(r * 0.5, size - r * 0.5);
    const cy = rng.range(r * 0.5, size - r * 0.5);
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    const contours = contoursOf(shapes[cls]!).map((c) => {
      const t = new Float64Array(c.length);
      for (let i = 0; i < c.length; i += 2) {
        const x = c[i]! * aspect;
        const y = c[i + 1]!;
        t[i] = cx + (x * cos - y * sin) * r;
        t[i + 1] = cy + (x * sin + y * cos) * r;
      }
      return t;
    });
    const m = rasterise(contours);
    if (m.total === 0) continue;
    // Count what lies inside the image, what each earlier object would lose, and the colour under.
    covered.fill(0);
    let inside = 0;
    let sr = 0;
    let sg = 0;
    let sb = 0;
    for (let row = 0; row < m.h; row++) {
      const y = m.y0 + row;
      if (y < 0 || y >= size) continue;
      for (let col = 0; col < m.w; col++) {
        const x = m.x0 + col;
        if (x < 0 || x >= size || !m.bits[row * m.w + col]) continue;
        const p = y * size + x;
        inside++;
        covered[owner[p]!]++;
        sr += rgb[p * 3]!;
        sg += rgb[p * 3 + 1]!;
        sb += rgb[p * 3 + 2]!;
      }
    }
    if (inside < MIN_VISIBLE * m.total) continue;
    let hides = false;
    for (let j = 1; j < classes.length; j++)
      if (visible[j]! - covered[j]! < MIN_VISIBLE * full[j]!) hides = true;
    if (hides) continue;
    const under: RGB = [sr / inside, sg / inside, sb / inside];
    const colour = contrastingColour(rng, style, under);
    const id = classes.length;
    classes.push(cls);
    full.push(m.total);
    visible.push(inside);
    for (let j = 1; j < id; j++) visible[j] = visible[j]! - covered[j]!;
    // Style b: an outline (dark on light ground, light on dark) and stronger shading.
    const border =
      style === 'b' ? borderOf(m, Math.max(1, Math.round(extent * rng.range(0.04, 0.08)))) : null;
    const edge: RGB =
      luma(under) > 110
        ? [colour[0] * 0.3, colour[1] * 0.3, colour[2] * 0.3]
        : [
            255 - (255 - colour[0]) * 0.2,
            255 - (255 - colour[1]) * 0.2,
            255 - (255 - colour[2]) * 0.2,
          ];
    const shadeAngle = rng.range(0, 2 * Math.PI);
    const shade = (style === 'a' ? rng.range(0, 0.12) : rng.range(0.12, 0.3)) / r;
    const sx = Math.cos(shadeAngle) * shade;
    const sy = Math.sin(shadeAngle) * shade;
    const noise = style === 'a' ? 20 : 12;
    for (let row = 0; row < m.h; row++) {
      const y = m.y0 + row;
      if (y < 0 || y >= size) continue;
      for (let col = 0; col < m.w; col++) {
        const x = m.x0 + col;
        const k = row * m.w + col;
        if (x < 0 || x >= size || !m.bits[k]) continue;
        const p = y * size + x;
        owner[p] = id;
        const e = (rng.next() - 0.5) * noise;
        if (border && border[k]) {
          rgb[p * 3] = edge[0] + e;
          rgb[p * 3 + 1] = edge[1] + e;
          rgb[p * 3 + 2] = edge[2] + e;
        } else {
          const f = 1 + (x - cx) * sx + (y - cy) * sy;
          rgb[p * 3] = colour[0] * f + e;
          rgb[p * 3 + 1] = colour[1] * f + e;
          rgb[p * 3 + 2] = colour[2] * f + e;
        }
      }
    }
  }
  return {
    width: size,
    height: size,
    data: new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength),
    labels: labelsFromOwner(owner, classes, size),
  };
}

/** Each object's visible pixels' tight box (`owner`: 1-based object per pixel, 0 for none). */
function labelsFromOwner(owner: Uint8Array, classes: number[], size: number): number[][] {
  const count = classes.length;
  const x0 = new Int32Array(count).fill(size);
  const y0 = new Int32Array(count).fill(size);
  const x1 = new Int32Array(count).fill(-1);
  const y1 = new Int32Array(count).fill(-1);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const id = owner[y * size + x]!;
      if (id === 0) continue;
      if (x < x0[id]!) x0[id] = x;
      if (x > x1[id]!) x1[id] = x;
      if (y < y0[id]!) y0[id] = y;
      if (y > y1[id]!) y1[id] = y;
    }
  }
  const labels: number[][] = [];
  for (let id = 1; id < count; id++) {
    if (x1[id]! < 0) continue;
    const w = x1[id]! + 1 - x0[id]!;
    const h = y1[id]! + 1 - y0[id]!;
    labels.push([
      classes[id]!,
      (x0[id]! + w / 2) / size,
      (y0[id]! + h / 2) / size,
      w / size,
      h / size,
    ]);
  }
  return labels;
}

// ---------------------------------------------------------------------------------------------
// Style 'mix' (the pretraining set): broad looks so that the features transfer to other shapes.

const MIX_MAX_OBJECTS = 10;
const MIX_MIN_SIZE = 0.04;
const MIX_MAX_SIZE = 0.5;
const MIX_MIN_VISIBLE = 0.55;

type Palette = 'vivid' | 'pastel' | 'neon' | 'dark' | 'gray' | 'any';
const PALETTES: Palette[] = ['vivid', 'pastel', 'neon', 'dark', 'gray', 'any'];

function paletteColour(rng: Rng, p: Palette): RGB {
  switch (p) {
    case 'vivid':
      return hsv(rng.next(), rng.range(0.55, 1), rng.range(0.45, 1));
    case 'pastel':
      return hsv(rng.next(), rng.range(0.15, 0.45), rng.range(0.85, 1));
    case 'neon':
      return hsv(rng.next(), rng.range(0.8, 1), rng.range(0.9, 1));
    case 'dark':
      return hsv(rng.next(), rng.range(0.3, 1), rng.range(0.05, 0.35));
    case 'gray': {
      const v = rng.range(0, 255);
      return [v, v, v];
    }
    case 'any':
      return [rng.range(0, 255), rng.range(0, 255), rng.range(0, 255)];
  }
}

/** The most contrasting of `tries` candidates: one or two tries give faint objects now and then. */
function mixColour(rng: Rng, p: Palette, under: RGB, tries: number): RGB {
  let best: RGB = [0, 0, 0];
  let bestScore = -1;
  for (let k = 0; k < tries; k++) {
    const c = paletteColour(rng, p);
    const score =
      Math.abs(luma(c) - luma(under)) + 0.35 * Math.hypot(...c.map((v, i) => v - under[i]!));
    if (score > bestScore) [best, bestScore] = [c, score];
  }
  return best;
}

/** The image's look: the objects' palette, a tone applied to the background, contrast. */
interface MixLook {
  palette: Palette;
  /** 0 as drawn, 1 gray, 2 lightened (paper), 3 darkened. */
  tone: number;
  tries: number;
}

function mixBackground(rng: Rng, size: number, rgb: Uint8ClampedArray): MixLook {
  renderBackground(rng, rng.next() < 0.5 ? 'a' : 'b', size, rgb);
  const tone = rng.next() < 0.5 ? 0 : rng.int(1, 3);
  const palettes: Palette[][] = [
    PALETTES,
    ['gray', 'gray', 'any'],
    ['dark', 'vivid'],
    ['neon', 'pastel', 'vivid'],
  ];
  const options = palettes[tone]!;
  const look: MixLook = {
    palette: options[rng.int(0, options.length - 1)]!,
    tone,
    tries: rng.int(1, 12),
  };
  if (tone === 1) {
    for (let i = 0; i < rgb.length; i += 3)
      rgb[i] =
        rgb[i + 1] =
        rgb[i + 2] =
          0.299 * rgb[i]! + 0.587 * rgb[i + 1]! + 0.114 * rgb[i + 2]!;
  } else if (tone === 2) {
    for (let i = 0; i < rgb.length; i++) rgb[i] = 255 - (255 - rgb[i]!) * 0.3;
  } else if (tone === 3) {
    for (let i = 0; i < rgb.length; i++) rgb[i] = rgb[i]! * 0.35;
  }
  return look;
}

/** Contours for one placement: unit contours scaled by r, stretched by aspect, turned by angle. */
function placeContours(
  unit: Contour[],
  cx: number,
  cy: number,
  r: number,
  aspect: number,
  angle: number,
): Float64Array[] {
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  return unit.map((c) => {
    const t = new Float64Array(c.length);
    for (let i = 0; i < c.length; i += 2) {
      const x = c[i]! * aspect;
      const y = c[i + 1]!;
      t[i] = cx + (x * cos - y * sin) * r;
      t[i + 1] = cy + (x * sin + y * cos) * r;
    }
    return t;
  });
}

/** Clutter and occluders: a jagged polygon (no class) or a straight stroke. */
function distractor(rng: Rng, size: number): Float64Array[] {
  const cx = rng.range(0, size);
  const cy = rng.range(0, size);
  if (rng.next() < 0.5) {
    const n = rng.int(5, 11);
    const c: Contour = [];
    for (let k = 0; k < n; k++) {
      const a = ((k + rng.range(-0.3, 0.3)) * 2 * Math.PI) / n;
      const rad = rng.range(0.25, 1);
      c.push(rad * Math.cos(a), rad * Math.sin(a));
    }
    return placeContours(
      [c],
      cx,
      cy,
      size * rng.range(0.03, 0.15),
      rng.range(0.6, 1.6),
      rng.range(0, 2 * Math.PI),
    );
  }
  const half = (size * rng.range(0.1, 0.45)) / 2;
  const w = rng.range(0.5, 2.5) / half;
  return placeContours([[-1, -w, 1, -w, 1, w, -1, w]], cx, cy, half, 1, rng.range(0, 2 * Math.PI));
}

/** What a mask covers: its pixels inside the image, per owner, and the mean colour under it. */
function coverage(
  m: Mask,
  owner: Uint8Array,
  rgb: Uint8ClampedArray,
  size: number,
  covered: Int32Array,
) {
  covered.fill(0);
  let inside = 0;
  const sum = [0, 0, 0];
  for (let row = 0; row < m.h; row++) {
    const y = m.y0 + row;
    if (y < 0 || y >= size) continue;
    for (let col = 0; col < m.w; col++) {
      const x = m.x0 + col;
      if (x < 0 || x >= size || !m.bits[row * m.w + col]) continue;
      const p = y * size + x;
      inside++;
      covered[owner[p]!]++;
      for (let k = 0; k < 3; k++) sum[k] += rgb[p * 3 + k]!;
    }
  }
  const under: RGB = inside ? [sum[0]! / inside, sum[1]! / inside, sum[2]! / inside] : [0, 0, 0];
  return { inside, under };
}

/** How an object is filled: flat, shaded, outlined, stripes, checker, dots, radial, speckle. */
interface Fill {
  kind: number;
  a: RGB;
  b: RGB;
  cx: number;
  cy: number;
  r: number;
  /** Unit direction of stripes and shading. */
  ux: number;
  uy: number;
  period: number;
  border: Uint8Array | null;
  noise: number;
}

function makeFill(
  rng: Rng,
  look: MixLook,
  under: RGB,
  m: Mask,
  cx: number,
  cy: number,
  r: number,
): Fill {
  const palette = rng.next() < 0.25 ? PALETTES[rng.int(0, PALETTES.length - 1)]! : look.palette;
  const gray = look.tone === 1 && rng.next() < 0.8;
  const tint = (c: RGB): RGB => (gray ? [luma(c), luma(c), luma(c)] : c);
  const a = tint(mixColour(rng, palette, under, look.tries));
  const kind = rng.int(0, 7);
  // The second colour: the first one darker or lighter, or another contrasting one.
  const f = rng.range(0.35, 0.7);
  const b: RGB =
    rng.next() < 0.5
      ? tint(mixColour(rng, palette, a, 4))
      : luma(a) > 128
        ? [a[0] * f, a[1] * f, a[2] * f]
        : [255 - (255 - a[0]) * f, 255 - (255 - a[1]) * f, 255 - (255 - a[2]) * f];
  const angle = rng.range(0, 2 * Math.PI);
  return {
    kind,
    a,
    b,
    cx,
    cy,
    r,
    ux: Math.cos(angle),
    uy: Math.sin(angle),
    period: Math.max(2, r * rng.range(0.25, 0.7)),
    border: kind === 2 ? borderOf(m, Math.max(1, Math.round(r * rng.range(0.08, 0.2)))) : null,
    noise: rng.range(4, 24),
  };
}

/** The colour mix (0: a, 1: b) of `fill` at pixel (x, y), mask index k. */
function fillMix(fill: Fill, x: number, y: number, k: number, rng: Rng): number {
  const dx = x - fill.cx;
  const dy = y - fill.cy;
  const u = dx * fill.ux + dy * fill.uy;
  switch (fill.kind) {
    case 1:
      return Math.min(1, Math.max(0, 0.5 + (0.5 * u) / fill.r));
    case 2:
      return fill.border![k]!;
    case 3:
      return Math.floor(u / fill.period + 1000) & 1;
    case 4: {
      const v = -dx * fill.uy + dy * fill.ux;
      return (Math.floor(u / fill.period + 1000) + Math.floor(v / fill.period + 1000)) & 1;
    }
    case 5: {
      const v = -dx * fill.uy + dy * fill.ux;
      const p = fill.period;
      const du = (((u % p) + p) % p) - p / 2;
      const dv = (((v % p) + p) % p) - p / 2;
      return du * du + dv * dv < p * p * 0.09 ? 1 : 0;
    }
    case 6:
      return Math.min(1, Math.sqrt(dx * dx + dy * dy) / fill.r);
    case 7:
      return rng.next() < 0.3 ? 1 : 0;
    default:
      return 0;
  }
}

/** Paints mask `m` with `fill` (or flat `colour` for distractors) and sets its pixels' owner. */
function paint(
  m: Mask,
  fill: Fill,
  rgb: Uint8ClampedArray,
  owner: Uint8Array | null,
  id: number,
  size: number,
  rng: Rng,
) {
  for (let row = 0; row < m.h; row++) {
    const y = m.y0 + row;
    if (y < 0 || y >= size) continue;
    for (let col = 0; col < m.w; col++) {
      const x = m.x0 + col;
      const k = row * m.w + col;
      if (x < 0 || x >= size || !m.bits[k]) continue;
      const p = y * size + x;
      if (owner) owner[p] = id;
      const t = fillMix(fill, x, y, k, rng);
      const e = (rng.next() - 0.5) * fill.noise;
      for (let c = 0; c < 3; c++) rgb[p * 3 + c] = fill.a[c]! + (fill.b[c]! - fill.a[c]!) * t + e;
    }
  }
}

function flatFill(rng: Rng, look: MixLook, under: RGB, tries: number): Fill {
  const a = mixColour(rng, look.palette, under, tries);
  return { kind: 0, a, b: a, cx: 0, cy: 0, r: 1, ux: 1, uy: 0, period: 2, border: null, noise: 8 };
}

function renderMixImage(
  spec: SyntheticSpec,
  shapes: SyntheticShape[],
  split: 'train' | 'val',
  index: number,
): SyntheticImage {
  const { size } = spec;
  const rng = imageRng(spec, split, index);
  const rgb = new Uint8ClampedArray(size * size * 3);
  const look = mixBackground(rng, size, rgb);
  const owner = new Uint8Array(size * size);
  const covered = new Int32Array(MIX_MAX_OBJECTS + 8);
  // Clutter under the objects: part of the background.
  for (let k = rng.int(0, 8); k > 0; k--) {
    const m = rasterise(distractor(rng, size));
    const { under } = coverage(m, owner, rgb, size, covered);
    paint(m, flatFill(rng, look, under, 2), rgb, null, 0, size, rng);
  }
  const full: number[] = [0];
  const visible: number[] = [0];
  const classes: number[] = [-1];
  const wanted = rng.int(1, MIX_MAX_OBJECTS);
  const occluders = rng.int(0, 3);
  // Objects, then occluders over them (which take pixels away from objects, owner 0).
  for (
    let attempt = 0;
    attempt < (wanted + occluders) * 12 && classes.length <= wanted + occluders;
    attempt++
  ) {
    const isObject = classes.length <= wanted;
    let cls = -1;
    let contours: Float64Array[];
    let cx = 0;
    let cy = 0;
    let r = 1;
    if (isObject) {
      cls = rng.int(0, shapes.length - 1);
      // Log-uniform sizes: as many small objects as large ones.
      r = (size * MIX_MIN_SIZE * (MIX_MAX_SIZE / MIX_MIN_SIZE) ** rng.next()) / 2;
      cx = rng.range(r * 0.4, size - r * 0.4);
      cy = rng.range(r * 0.4, size - r * 0.4);
      contours = placeContours(
        contoursOf(shapes[cls]!),
        cx,
        cy,
        r,
        rng.range(0.8, 1.25),
        rng.range(0, 2 * Math.PI),
      );
    } else contours = distractor(rng, size);
    const m = rasterise(contours);
    if (m.total === 0) continue;
    const { inside, under } = coverage(m, owner, rgb, size, covered);
    if (isObject && inside < MIX_MIN_VISIBLE * m.total) continue;
    let hides = false;
    for (let j = 1; j < full.length; j++)
      if (classes[j]! >= 0 && visible[j]! - covered[j]! < MIX_MIN_VISIBLE * full[j]!) hides = true;
    if (hides) continue;
    for (let j = 1; j < full.length; j++) visible[j] = visible[j]! - covered[j]!;
    const id = isObject ? full.length : 0;
    // Occluders still take a slot so that the loop ends; their id stays 0 in the owner map.
    classes.push(cls);
    full.push(isObject ? m.total : 0);
    visible.push(isObject ? inside : 0);
    const fill = isObject
      ? makeFill(rng, look, under, m, cx, cy, r)
      : flatFill(rng, look, under, 3);
    paint(m, fill, rgb, owner, id, size, rng);
  }
  return {
    width: size,
    height: size,
    data: new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength),
    labels: labelsFromOwner(owner, classes, size),
  };
}

/** Label rows as written: `class cx cy w h`, coordinates with 6 decimals. */
export function formatSyntheticLabels(labels: number[][]): string {
  return labels.map(([c, ...box]) => `${c} ${box.map((v) => v.toFixed(6)).join(' ')}\n`).join('');
}

// ---------------------------------------------------------------------------------------------
// The data set on disk.

/** Identifies what a spec generates: a changed spec (or generator) means a new data set. */
function specHash(spec: SyntheticSpec): string {
  const key = {
    generator: GENERATOR_VERSION,
    name: spec.name,
    classes: spec.classes,
    train: spec.train,
    val: spec.val,
    size: spec.size,
    seed: spec.seed,
    style: spec.style,
  };
  return crypto.createHash('sha256').update(JSON.stringify(key)).digest('hex');
}

const COMPLETE = '.complete';

function isComplete(dir: string, hash: string): boolean {
  try {
    return (
      fs.readFileSync(path.join(dir, COMPLETE), 'utf8').trim() === hash &&
      fs.existsSync(path.join(dir, 'data.yaml'))
    );
  } catch {
    return false;
  }
}

function dataYaml(spec: SyntheticSpec): string {
  return (
    `# yolo5 built-in synthetic data set ${spec.name} (style ${spec.style}, seed ${spec.seed}, ` +
    `${spec.size} px); generated, do not edit\n` +
    'path: .\n' +
    'train: images/train\n' +
    'val: images/val\n' +
    `nc: ${spec.classes.length}\n` +
    'names:\n' +
    spec.classes.map((c) => `  - ${c}\n`).join('')
  );
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes leftovers of crashed runs: `<name>.tmp-<pid>-…` / `.old-…` of dead processes, old. */
function removeStale(root: string, name: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(root);
  } catch {
    return;
  }
  for (const e of entries) {
    const m = /^(.+)\.(?:tmp|old)-(\d+)-\d+$/.exec(e);
    if (!m || m[1] !== name) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || pidAlive(pid)) continue;
    const p = path.join(root, e);
    try {
      // A pid from another container may look dead: only touch folders idle for an hour.
      if (Date.now() - fs.statSync(p).mtimeMs < 3600_000) continue;
      fs.rmSync(p, { recursive: true, force: true });
    } catch {
      // another process got there first
    }
  }
}

let folderCounter = 0;
const inFlight = new Map<string, Promise<string>>();

/** Writes the whole data set into `tmp` (which must not exist); `.complete` comes last. */
async function generate(spec: SyntheticSpec, tmp: string, hash: string): Promise<void> {
  const addon = native();
  let failure: unknown;
  const pending: Promise<void>[] = [];
  for (const split of ['train', 'val'] as const) {
    const images = path.join(tmp, 'images', split);
    const labels = path.join(tmp, 'labels', split);
    fs.mkdirSync(images, { recursive: true });
    fs.mkdirSync(labels, { recursive: true });
    const digits = Math.max(5, String(spec[split] - 1).length);
    for (let i = 0; i < spec[split]; i++) {
      const stem = String(i).padStart(digits, '0');
      const img = renderSyntheticImage(spec, split, i);
      fs.writeFileSync(path.join(labels, `${stem}.txt`), formatSyntheticLabels(img.labels));
      // Caught at once so a failure does not go unhandled while older writes are awaited.
      pending.push(
        addon
          .drawDetections({ data: img.data, width: img.width, height: img.height }, [], {
            output: path.join(images, `${stem}.jpg`),
          })
          .then(
            () => undefined,
            (e: unknown) => {
              failure ??= e;
            },
          ),
      );
      if (pending.length >= WRITES_IN_FLIGHT) await pending.shift();
      if (failure !== undefined) break;
    }
  }
  await Promise.all(pending);
  if (failure !== undefined) throw failure;
  fs.writeFileSync(path.join(tmp, 'data.yaml'), dataYaml(spec));
  fs.writeFileSync(path.join(tmp, COMPLETE), `${hash}\n`);
}

/** Moves the finished `tmp` to `dir`, unless another process already put the same data set there. */
function install(tmp: string, dir: string, hash: string): void {
  for (let attempt = 0; ; attempt++) {
    if (isComplete(dir, hash)) {
      fs.rmSync(tmp, { recursive: true, force: true });
      return;
    }
    try {
      fs.renameSync(tmp, dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (!['ENOTEMPTY', 'EEXIST', 'EPERM', 'ENOTDIR'].includes(code ?? '') || attempt >= 5)
        throw e;
    }
    if (isComplete(dir, hash)) continue;
    // `dir` holds another spec or generator version under this name: move it aside, drop it.
    const aside = `${dir}.old-${process.pid}-${folderCounter++}`;
    try {
      fs.renameSync(dir, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    fs.rmSync(aside, { recursive: true, force: true });
  }
}

/**
 * Generates the data set (if not already complete) and returns its data yaml path:
 * `<root>/<name>/{images,labels}/{train,val}/NNNNN.{jpg,txt}` and `<root>/<name>/data.yaml`.
 * Generation goes to `<name>.tmp-<pid>-<n>` and is renamed into place when finished; a
 * `.complete` file holds the spec's hash, so a changed spec regenerates.
 */
export async function ensureSyntheticDataset(
  spec: SyntheticSpec = SHAPES_A,
  root: string = syntheticCacheDir(),
  log?: (s: string) => void,
): Promise<string> {
  checkSpec(spec);
  const dir = path.resolve(root, spec.name);
  const yaml = path.join(dir, 'data.yaml');
  const hash = specHash(spec);
  if (isComplete(dir, hash)) return yaml;
  // Concurrent calls in one process share one generation.
  const key = `${dir}\0${hash}`;
  const running = inFlight.get(key);
  if (running) return running;
  const job = (async () => {
    const started = Date.now();
    makeDirs(path.dirname(dir), 'synthetic data folder');
    removeStale(path.dirname(dir), spec.name);
    const tmp = `${dir}.tmp-${process.pid}-${folderCounter++}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    log?.(
      `Generating synthetic data set ${spec.name} (${spec.train} train + ${spec.val} val images, ` +
        `${spec.size} px, classes ${spec.classes.join(', ')}) in ${dir}`,
    );
    try {
      await generate(spec, tmp, hash);
      install(tmp, dir, hash);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      if (e instanceof Yolo5Error) throw e;
      throw new Yolo5Error(
        'E_DATA',
        `could not generate the synthetic data set ${spec.name} in ${dir}: ${e instanceof Error ? e.message : String(e)}`,
        { file: dir, cause: e },
      );
    }
    log?.(
      `Synthetic data set ${spec.name} ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    return yaml;
  })();
  inFlight.set(key, job);
  try {
    return await job;
  } finally {
    inFlight.delete(key);
  }
}

/**
 * Axes on a canvas: a frame with ticks at "nice" steps, tick labels, title, axis labels, line and
 * scatter series clipped to the plot area, and a legend. Enough for the run folder's plots.
 */
import { font, type Context } from './canvas';

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface LineStyle {
  color: string;
  width?: number;
  dash?: number[];
  label?: string;
  /** Draw a dot at each point too. */
  markers?: boolean;
}

interface Series {
  kind: 'line' | 'scatter';
  xs: ArrayLike<number>;
  ys: ArrayLike<number>;
  style: LineStyle;
  size?: number;
  colors?: string[];
}

export interface AxesOptions {
  title?: string;
  xlabel?: string;
  ylabel?: string;
  xlim?: [number, number];
  ylim?: [number, number];
  /** Font size in pixels for tick labels (others scale from it). */
  fontPx?: number;
  /** Category names at x = 0, 1, 2, … instead of numeric x ticks (bar charts). */
  xtickLabels?: readonly string[];
  legend?: 'upper right' | 'lower left' | 'lower right' | 'upper left' | 'outside';
}

/** Tick values at 1, 2 or 5 × 10^k steps covering [lo, hi], about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  // Ticks by integer index, so a step below the values' float resolution cannot stall the loop.
  const first = Math.ceil(lo / step - 1e-9);
  const last = Math.floor(hi / step + 1e-9);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last - first >= 1000)
    return [lo, hi];
  const out: number[] = [];
  for (let k = first; k <= last; k++) out.push(k === 0 ? 0 : k * step);
  return out;
}

export function tickLabel(v: number, ticks: number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : Math.abs(v) || 1;
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  if (Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-4)) return v.toExponential(1);
  return v.toFixed(decimals);
}

function extent(series: Series[], key: 'xs' | 'ys'): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series)
    for (let i = 0; i < s[key].length; i++) {
      const v = s[key][i]!;
      if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    }
  if (!Number.isFinite(lo)) return [0, 1];
  // Equal up to rounding (0.081111 vs 0.08111100000000002): a flat series, padded around its value.
  if (hi - lo <= 1e-9 * Math.max(Math.abs(lo), Math.abs(hi)))
    return [lo - (Math.abs(lo) || 1) * 0.05, hi + (Math.abs(hi) || 1) * 0.05];
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

export class Axes {
  readonly #series: Series[] = [];
  readonly #marks: { x: number; y: number; color: string; label?: string }[] = [];

  constructor(
    readonly ctx: Context,
    readonly box: Box,
    readonly opts: AxesOptions = {},
  ) {}

  line(xs: ArrayLike<number>, ys: ArrayLike<number>, style: LineStyle): this {
    this.#series.push({ kind: 'line', xs, ys, style });
    return this;
  }

  scatter(
    xs: ArrayLike<number>,
    ys: ArrayLike<number>,
    style: LineStyle,
    size = 3,
    colors?: string[],
  ): this {
    this.#series.push({ kind: 'scatter', xs, ys, style, size, ...(colors ? { colors } : {}) });
    return this;
  }

  /** A marker (a cross) at one point, e.g. the best F1. */
  mark(x: number, y: number, color: string, label?: string): this {
    this.#marks.push({ x, y, color, ...(label !== undefined ? { label } : {}) });
    return this;
  }

  /** The plot area inside the margins for tick labels and titles. */
  get area(): Box {
    const f = this.opts.fontPx ?? 14;
    const left = f * (this.opts.ylabel ? 5.2 : 4);
    const longest = Math.max(0, ...(this.opts.xtickLabels ?? []).map((l) => l.length));
    const bottom = f * (this.opts.xlabel ? 3.6 : 2.2) + longest * f * 0.45;
    const top = f * (this.opts.title ? 2.4 : 0.8);
    const right = this.opts.legend === 'outside' ? this.#legendWidth(f) + f * 1.4 : f;
    const b = this.box;
    return { x: b.x + left, y: b.y + top, w: b.w - left - right, h: b.h - top - bottom };
  }

  draw(): void {
    const { ctx } = this;
    const a = this.area;
    const f = this.opts.fontPx ?? 14;
    const [x0, x1] = this.opts.xlim ?? extent(this.#series, 'xs');
    const [y0, y1] = this.opts.ylim ?? extent(this.#series, 'ys');
    const px = (v: number) => a.x + ((v - x0) / (x1 - x0 || 1)) * a.w;
    const py = (v: number) => a.y + a.h - ((v - y0) / (y1 - y0 || 1)) * a.h;
    this.#frame(a, f, [x0, x1], [y0, y1], px, py);
    ctx.save();
    ctx.beginPath();
    ctx.rect(a.x, a.y, a.w, a.h);
    ctx.clip();
    for (const s of this.#series) this.#drawSeries(s, px, py);
    for (const m of this.#marks) {
      ctx.strokeStyle = m.color;
      ctx.lineWidth = 2;
      const [cx, cy, r] = [px(m.x), py(m.y), f * 0.6];
      ctx.beginPath();
      ctx.moveTo(cx - r, cy - r);
      ctx.lineTo(cx + r, cy + r);
      ctx.moveTo(cx - r, cy + r);
      ctx.lineTo(cx + r, cy - r);
      ctx.stroke();
    }
    ctx.restore();
    this.#legend(a, f);
  }

  #frame(
    a: Box,
    f: number,
    xr: [number, number],
    yr: [number, number],
    px: (v: number) => number,
    py: (v: number) => number,
  ): void {
    const { ctx } = this;
    ctx.strokeStyle = '#000000';
    ctx.lineWidth = 1;
    ctx.strokeRect(a.x + 0.5, a.y + 0.5, a.w, a.h);
    ctx.fillStyle = '#000000';
    ctx.font = font(f);
    const cats = this.opts.xtickLabels;
    const xt = cats ? [] : niceTicks(xr[0], xr[1], Math.max(2, Math.floor(a.w / (f * 6))));
    if (cats) {
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      cats.forEach((name, i) => {
        ctx.save();
        ctx.translate(px(i), a.y + a.h + f * 0.6);
        ctx.rotate(-Math.PI / 4);
        ctx.fillText(name, 0, 0);
        ctx.restore();
      });
    }
    const yt = niceTicks(yr[0], yr[1], Math.max(2, Math.floor(a.h / (f * 3))));
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const v of xt) {
      const x = px(v);
      ctx.beginPath();
      ctx.moveTo(x, a.y + a.h);
      ctx.lineTo(x, a.y + a.h + f * 0.4);
      ctx.stroke();
      ctx.fillText(tickLabel(v, xt), x, a.y + a.h + f * 0.5);
    }
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of yt) {
      const y = py(v);
      ctx.beginPath();
      ctx.moveTo(a.x, y);
      ctx.lineTo(a.x - f * 0.4, y);
      ctx.stroke();
      ctx.fillText(tickLabel(v, yt), a.x - f * 0.5, y);
    }
    ctx.textAlign = 'center';
    if (this.opts.title) {
      ctx.font = font(f * 1.15);
      ctx.textBaseline = 'bottom';
      ctx.fillText(this.opts.title, a.x + a.w / 2, a.y - f * 0.5);
    }
    ctx.font = font(f * 1.05);
    if (this.opts.xlabel) {
      ctx.textBaseline = 'bottom';
      ctx.fillText(this.opts.xlabel, a.x + a.w / 2, this.box.y + this.box.h - f * 0.2);
    }
    if (this.opts.ylabel) {
      ctx.save();
      ctx.translate(this.box.x + f * 1.2, a.y + a.h / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textBaseline = 'middle';
      ctx.fillText(this.opts.ylabel, 0, 0);
      ctx.restore();
    }
  }

  #drawSeries(s: Series, px: (v: number) => number, py: (v: number) => number): void {
    const { ctx } = this;
    ctx.strokeStyle = s.style.color;
    ctx.fillStyle = s.style.color;
    ctx.lineWidth = s.style.width ?? 1.5;
    ctx.setLineDash(s.style.dash ?? []);
    const n = Math.min(s.xs.length, s.ys.length);
    if (s.kind === 'line') {
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < n; i++) {
        const [x, y] = [s.xs[i]!, s.ys[i]!];
        if (!Number.isFinite(x) || !Number.isFinite(y)) {
          pen = false;
          continue;
        }
        if (pen) ctx.lineTo(px(x), py(y));
        else ctx.moveTo(px(x), py(y));
        pen = true;
      }
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (s.kind === 'scatter' || s.style.markers) {
      const r = s.size ?? (ctx.lineWidth as number) * 1.6;
      for (let i = 0; i < n; i++) {
        if (!Number.isFinite(s.xs[i]!) || !Number.isFinite(s.ys[i]!)) continue;
        if (s.colors) ctx.fillStyle = s.colors[i]!;
        ctx.beginPath();
        ctx.arc(px(s.xs[i]!), py(s.ys[i]!), r, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    ctx.setLineDash([]);
  }

  #legendWidth(f: number): number {
    const labels = this.#series.map((s) => s.style.label).filter((l) => l !== undefined);
    if (labels.length === 0) return 0;
    this.ctx.font = font(f * 0.95);
    return Math.max(...labels.map((l) => this.ctx.measureText(l).width)) + f * 0.95 * 3.6;
  }

  #legend(a: Box, f: number): void {
    const items = this.#series.filter((s) => s.style.label);
    if (items.length === 0 || !this.opts.legend) return;
    const { ctx } = this;
    const lf = f * 0.95;
    ctx.font = font(lf);
    const textW = Math.max(...items.map((s) => ctx.measureText(s.style.label!).width));
    const w = textW + lf * 3.6;
    const h = items.length * lf * 1.4 + lf * 0.6;
    const pos = this.opts.legend;
    const x =
      pos === 'outside'
        ? a.x + a.w + lf * 0.8
        : pos.endsWith('right')
          ? a.x + a.w - w - 6
          : a.x + 6;
    const y = pos === 'outside' || pos.startsWith('upper') ? a.y + 6 : a.y + a.h - h - 6;
    ctx.fillStyle = 'rgba(255,255,255,0.85)';
    ctx.strokeStyle = '#bbbbbb';
    ctx.lineWidth = 1;
    ctx.fillRect(x, y, w, h);
    ctx.strokeRect(x + 0.5, y + 0.5, w, h);
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    items.forEach((s, i) => {
      const cy = y + lf * 0.8 + i * lf * 1.4;
      ctx.strokeStyle = s.style.color;
      ctx.lineWidth = Math.min(s.style.width ?? 1.5, 4);
      ctx.setLineDash(s.style.dash ?? []);
      ctx.beginPath();
      ctx.moveTo(x + lf * 0.4, cy);
      ctx.lineTo(x + lf * 2.4, cy);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = '#000000';
      ctx.fillText(s.style.label!, x + lf * 2.9, cy);
    });
  }
}

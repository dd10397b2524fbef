/**
 * A line chart as PNG for scripts/freeze-study (mAP per epoch for each --freeze run), drawn with
 * the plots' own axes (lib/report/chart.ts) on @napi-rs/canvas with the bundled DejaVu Sans.
 */
import { Axes } from '../lib/report/chart';
import { newCanvas } from '../lib/report/canvas';

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

export function lineChartPng(series: Series[], o: ChartOptions): Buffer {
  const W = o.width ?? 1060;
  const H = o.height ?? 540;
  const canvas = newCanvas(W, H);
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const yTop = Math.max(o.yMax ?? 0, ...ys, 1e-9);
  const ax = new Axes(
    canvas.getContext('2d'),
    { x: 0, y: 0, w: W, h: H },
    {
      title: o.title,
      xlabel: o.xLabel,
      ylabel: o.yLabel,
      xlim: [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)],
      ylim: [0, yTop * 1.05],
      fontPx: 15,
      legend: 'outside',
    },
  );
  for (const s of series) {
    ax.line(
      s.points.map((p) => p[0]),
      s.points.map((p) => p[1]),
      { color: `rgb(${s.color.join(',')})`, width: 3, markers: true, label: s.label },
    );
  }
  ax.draw();
  return canvas.encodeSync('png');
}

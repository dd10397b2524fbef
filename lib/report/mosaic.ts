/**
 * Batch mosaics (train_batch*.jpg, val_batch*_labels.jpg / _pred.jpg): up to 16 images in a grid,
 * each with its boxes coloured by class and labelled by name (and confidence for predictions),
 * the whole at most 1920 px on its long side.
 */
import {
  canvasFromRgb,
  classColor,
  font,
  newCanvas,
  saveCanvas,
  skia,
  type Canvas,
} from './canvas';

export interface MosaicTile {
  /** RGB bytes, or an image file to decode. */
  image: { data: Uint8Array; width: number; height: number } | string;
  /** Rows class, cx, cy, w, h normalised to the image, optionally a confidence after them. */
  boxes: ArrayLike<number>[];
  /** Drawn in the tile's corner (a file name). */
  caption?: string;
}

export interface MosaicOptions {
  names: readonly string[];
  maxSize?: number;
  /** Boxes with a confidence below this are not drawn (the reference shows preds above 0.25). */
  conf?: number;
}

const MAX_TILES = 16;

/** Draws the tiles into one image and writes it (JPEG by the file's extension). */
export async function writeMosaic(
  file: string,
  tiles: readonly MosaicTile[],
  opts: MosaicOptions,
): Promise<void> {
  const list = tiles.slice(0, MAX_TILES);
  const { loadImage } = skia();
  const images = await Promise.all(
    list.map((t) =>
      typeof t.image === 'string'
        ? loadImage(t.image)
        : canvasFromRgb(t.image.data, t.image.width, t.image.height),
    ),
  );
  const per = Math.ceil(Math.sqrt(Math.max(list.length, 1)));
  const rows = Math.ceil(list.length / per);
  const side = Math.max(...images.map((im) => Math.max(im.width, im.height)), 1);
  const scale = Math.min(1, (opts.maxSize ?? 1920) / (side * per));
  const cell = Math.max(1, Math.floor(side * scale));
  const canvas = newCanvas(cell * per, cell * Math.max(rows, 1));
  const ctx = canvas.getContext('2d');
  const f = Math.max(10, Math.round(cell / 22));
  const minConf = opts.conf ?? 0.25;
  images.forEach((im, i) => {
    const x0 = (i % per) * cell;
    const y0 = Math.floor(i / per) * cell;
    const s = cell / Math.max(im.width, im.height);
    const [w, h] = [im.width * s, im.height * s];
    ctx.drawImage(im as Canvas, x0, y0, w, h);
    ctx.lineWidth = Math.max(1, Math.round(cell / 200));
    ctx.font = font(f);
    ctx.textBaseline = 'bottom';
    for (const b of list[i]!.boxes) {
      const conf = b.length > 5 ? b[5]! : undefined;
      if (conf !== undefined && conf < minConf) continue;
      const c = Math.round(b[0]!);
      const [bx, by, bw, bh] = [
        (b[1]! - b[3]! / 2) * w,
        (b[2]! - b[4]! / 2) * h,
        b[3]! * w,
        b[4]! * h,
      ];
      ctx.strokeStyle = classColor(c);
      ctx.strokeRect(x0 + bx, y0 + by, bw, bh);
      const label = `${opts.names[c] ?? c}${conf !== undefined ? ` ${conf.toFixed(1)}` : ''}`;
      const tw = ctx.measureText(label).width + 4;
      const ty = Math.max(y0 + f + 2, y0 + by);
      ctx.fillStyle = classColor(c);
      ctx.fillRect(x0 + bx, ty - f - 2, tw, f + 2);
      ctx.fillStyle = '#ffffff';
      ctx.fillText(label, x0 + bx + 2, ty);
    }
    if (list[i]!.caption) {
      ctx.fillStyle = '#dcdcdc';
      ctx.textBaseline = 'top';
      ctx.fillText(list[i]!.caption!.slice(0, 40), x0 + 4, y0 + 3);
    }
    ctx.strokeStyle = '#ffffff';
    ctx.lineWidth = 3;
    ctx.strokeRect(x0, y0, cell, cell);
  });
  await saveCanvas(canvas, file);
}

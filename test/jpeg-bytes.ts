/**
 * Hand-made baseline JPEGs for tests: an image of flat 8×8 blocks, each component coded by its DC
 * coefficient alone (quantisation 1), so a decoder must give back exactly the samples written.
 * Four components make an Adobe CMYK file (APP14, transform 0), which no npm encoder writes.
 */

/** Writes bits MSB first, with the 0xFF byte stuffing of JPEG entropy-coded data. */
class BitWriter {
  readonly bytes: number[] = [];
  #acc = 0;
  #n = 0;

  write(value: number, bits: number): void {
    for (let i = bits - 1; i >= 0; i--) {
      this.#acc = (this.#acc << 1) | ((value >> i) & 1);
      if (++this.#n === 8) this.#flush();
    }
  }

  /** Pads the last byte with ones, as the standard asks. */
  end(): number[] {
    while (this.#n !== 0) this.write(1, 1);
    return this.bytes;
  }

  #flush(): void {
    this.bytes.push(this.#acc);
    if (this.#acc === 0xff) this.bytes.push(0x00);
    this.#acc = 0;
    this.#n = 0;
  }
}

function segment(marker: number, body: number[]): number[] {
  const len = body.length + 2;
  return [0xff, marker, len >> 8, len & 0xff, ...body];
}

const u16 = (v: number) => [v >> 8, v & 0xff];

/** Bits needed for |v| (the JPEG magnitude category). */
function category(v: number): number {
  let a = Math.abs(v);
  let n = 0;
  while (a > 0) {
    n++;
    a >>= 1;
  }
  return n;
}

export interface FlatJpegOptions {
  /** Blocks across and down. */
  cols: number;
  rows: number;
  /** Per block (row-major), one sample per component: 1 (gray) or 4 (CMYK). */
  blocks: number[][];
  /** Width and height written in the header instead of the real ones (a lying header). */
  claim?: [number, number];
}

/** A baseline JPEG of flat 8×8 blocks; 4 components are Adobe CMYK (stored values as given). */
export function flatJpeg(o: FlatJpegOptions): Buffer {
  const nc = o.blocks[0]!.length;
  const [width, height] = o.claim ?? [o.cols * 8, o.rows * 8];
  const out: number[] = [0xff, 0xd8];
  if (nc === 4) out.push(...segment(0xee, [...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, 0]));
  out.push(...segment(0xdb, [0x00, ...new Array<number>(64).fill(1)]));
  const comps = Array.from({ length: nc }, (_, i) => [i + 1, 0x11, 0]).flat();
  out.push(...segment(0xc0, [8, ...u16(height), ...u16(width), nc, ...comps]));
  // DC: categories 0…11, all 4-bit codes (0000…1011). AC: only end-of-block, code "0".
  const dcBits = new Array<number>(16).fill(0);
  dcBits[3] = 12;
  out.push(...segment(0xc4, [0x00, ...dcBits, ...Array.from({ length: 12 }, (_, i) => i)]));
  const acBits = new Array<number>(16).fill(0);
  acBits[0] = 1;
  out.push(...segment(0xc4, [0x10, ...acBits, 0x00]));
  const scanComps = Array.from({ length: nc }, (_, i) => [i + 1, 0x00]).flat();
  out.push(...segment(0xda, [nc, ...scanComps, 0, 63, 0]));
  const bits = new BitWriter();
  const pred = new Array<number>(nc).fill(0);
  for (const block of o.blocks) {
    block.forEach((sample, c) => {
      const dc = 8 * (sample - 128); // a flat block of `sample` after the level shift
      const diff = dc - pred[c]!;
      pred[c] = dc;
      const cat = category(diff);
      bits.write(cat, 4);
      if (cat > 0) bits.write(diff > 0 ? diff : diff + (1 << cat) - 1, cat);
      bits.write(0, 1); // end of block
    });
  }
  out.push(...bits.end(), 0xff, 0xd9);
  return Buffer.from(out);
}

/** RGB pixels of a 24-bit BMP (as stb_image_write writes them: bottom-up BGR rows). */
export function bmpPixels(bmp: Uint8Array): { width: number; height: number; rgb: Uint8Array } {
  const b = Buffer.from(bmp.buffer, bmp.byteOffset, bmp.byteLength);
  const offset = b.readUInt32LE(10);
  const width = b.readInt32LE(18);
  const height = Math.abs(b.readInt32LE(22));
  if (b.readUInt16LE(28) !== 24) throw new Error('expected a 24-bit BMP');
  const stride = Math.ceil((width * 3) / 4) * 4;
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = offset + (height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      rgb[(y * width + x) * 3] = b[row + x * 3 + 2]!;
      rgb[(y * width + x) * 3 + 1] = b[row + x * 3 + 1]!;
      rgb[(y * width + x) * 3 + 2] = b[row + x * 3]!;
    }
  }
  return { width, height, rgb };
}

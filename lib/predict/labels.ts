/**
 * `--save-txt` rows as the reference's detect.py writes them: boxes rounded to whole pixels of the
 * source image first (torch's round: halves to even), then `class cx cy w h [conf]` normalised in
 * float32 and printed with `%g` (6 significant digits), lowest confidence first.
 */
import type { DetectResult } from './detect';

/** torch.round on a float32: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * `x` rounded to `p` significant digits with ties to even on its exact binary value, as C's
 * printf rounds (JS's toPrecision rounds ties up: 0.2578125 → 0.257813, Python says 0.257812).
 */
function roundSignificant(x: number, p: number): number {
  const [mant, exp] = Math.abs(x).toExponential(99).split('e') as [string, string];
  const digits = mant.replace('.', '');
  const kept = digits.slice(0, p);
  const rest = digits.slice(p);
  const half = rest[0] === '5' && /^50*$/.test(rest);
  const up =
    rest[0]! > '5' || (rest[0] === '5' && !half) || (half && Number(kept.at(-1)) % 2 === 1);
  const n = (BigInt(kept) + (up ? 1n : 0n)).toString();
  const e = Number(exp) - (p - 1) + (n.length - kept.length);
  return Math.sign(x) * Number(`${n.slice(0, p)}e${e}`);
}

/** Python's `'%g' % x` (6 significant digits, trailing zeros dropped). */
export function formatG(x: number): string {
  if (x === 0) return '0';
  const r = roundSignificant(x, 6);
  const exp = Math.floor(Math.log10(Math.abs(r)));
  if (exp < -4 || exp >= 6) {
    const [m, e] = r.toExponential(5).split('e');
    const mant = m!.includes('.') ? m!.replace(/\.?0+$/, '') : m!;
    const n = Number(e);
    return `${mant}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  return String(Number(r.toPrecision(6)));
}

/** The rows of one image's label file (without trailing newline), lowest confidence first. */
export function yoloTxtRows(r: DetectResult, withConf: boolean): string[] {
  const f = Math.fround;
  return [...r.boxes].reverse().map((b) => {
    const [x1, y1, x2, y2] = [b.x1, b.y1, b.x2, b.y2].map((v) => roundHalfEven(f(v)));
    const v = [
      f(f((x1! + x2!) / 2) / r.width),
      f(f((y1! + y2!) / 2) / r.height),
      f(f(x2! - x1!) / r.width),
      f(f(y2! - y1!) / r.height),
      ...(withConf ? [f(b.confidence)] : []),
    ];
    return [String(b.class), ...v.map(formatG)].join(' ');
  });
}

/**
 * Freeze specs → parameter names. Freezing is name-prefix matching on the PyTorch names:
 * N → `model.0.` … `model.{N-1}.`; a list of numbers → exactly those layers; strings → name
 * prefixes, or globs when they hold `*`.
 */
import { Yolo5Error, show } from '../errors';

export type FreezeSpec = number | readonly number[] | string | readonly string[];

interface Pattern {
  label: string;
  /** Set for layer-index patterns, which may legitimately match no parameter. */
  layer?: number;
  test(name: string): boolean;
}

function layerPrefix(i: number): Pattern {
  const prefix = `model.${i}.`;
  return { label: prefix, layer: i, test: (name) => name.startsWith(prefix) };
}

// `*` matches within one dotted component, `**` across components; like plain prefixes, a glob
// matches the start of a name.
function globPattern(glob: string): Pattern {
  const source = glob
    .split('**')
    .map((part) =>
      part
        .split('*')
        .map((lit) => lit.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^.]*'),
    )
    .join('.*');
  const re = new RegExp(`^${source}`);
  return { label: glob, test: (name) => re.test(name) };
}

/** Turns a spec into patterns; a bad spec throws E_FREEZE naming the value. */
export function freezePatterns(spec: FreezeSpec): Pattern[] {
  const bad = (why: string): Yolo5Error =>
    new Yolo5Error('E_FREEZE', `Invalid freeze spec ${show(spec)}: ${why}`, { value: spec });
  if (typeof spec === 'number') {
    if (!Number.isInteger(spec) || spec < 0) throw bad('a layer count must be an integer >= 0');
    return Array.from({ length: spec }, (_, i) => layerPrefix(i));
  }
  if (typeof spec === 'string') return freezePatterns([spec]);
  if (!Array.isArray(spec))
    throw bad('expected a number, a list of layer indices, or name prefixes');
  return (spec as readonly (number | string)[]).map((item) => {
    if (typeof item === 'number') {
      if (!Number.isInteger(item) || item < 0)
        throw bad(`layer index ${show(item)} is not an integer >= 0`);
      return layerPrefix(item);
    }
    if (typeof item === 'string' && item.length > 0) {
      return item.includes('*')
        ? globPattern(item)
        : { label: item, test: (name: string) => name.startsWith(item) };
    }
    throw bad(`item ${show(item)} is neither a layer index nor a name prefix`);
  });
}

/**
 * The parameter names a spec freezes, in model order. Layer indices must exist (layers without
 * parameters, like Upsample or Concat, are fine to name); every name prefix or glob must match a
 * parameter; and a non-empty spec that freezes nothing at all is an error, not a silent no-op.
 */
export function matchFreeze(
  spec: FreezeSpec,
  names: readonly string[],
  layerCount: number,
): string[] {
  const patterns = freezePatterns(spec);
  const tooFar = patterns.flatMap((p) =>
    p.layer !== undefined && p.layer >= layerCount ? [p.layer] : [],
  );
  if (tooFar.length > 0) {
    throw new Yolo5Error(
      'E_FREEZE',
      `Freeze spec ${show(spec)} names layer ${Math.max(...tooFar)}, but this model has layers model.0 … model.${layerCount - 1}`,
      { value: spec },
    );
  }
  const unmatched = patterns.filter((p) => p.layer === undefined && !names.some((n) => p.test(n)));
  if (unmatched.length > 0) {
    throw new Yolo5Error(
      'E_FREEZE',
      `Freeze spec ${show(spec)}: ${unmatched.map((p) => show(p.label)).join(', ')} match${unmatched.length === 1 ? 'es' : ''} no parameter name`,
      { value: spec },
    );
  }
  const frozen = names.filter((n) => patterns.some((p) => p.test(n)));
  if (patterns.length > 0 && frozen.length === 0) {
    throw new Yolo5Error('E_FREEZE', `Freeze spec ${show(spec)} matches no parameter`, {
      value: spec,
    });
  }
  return frozen;
}

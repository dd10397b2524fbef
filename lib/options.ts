/** Option checks with one message pattern: "Expected <what> for <name> but received <value>". */
import { Yolo5Error, show } from './errors';

function fail(name: string, what: string, value: unknown): never {
  throw new Yolo5Error('E_ARG', `Expected ${what} for ${name} but received ${show(value)}`, {
    value,
  });
}

export function checkInteger(
  name: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(
      name,
      max === Number.MAX_SAFE_INTEGER ? `integer >= ${min}` : `integer between ${min} and ${max}`,
      value,
    );
  }
  return value;
}

export function checkNumber(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    fail(name, `number between ${min} and ${max}`, value);
  }
  return value;
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(name, 'boolean', value);
  return value;
}

export function checkClasses(name: string, value: unknown, nc: number): number[] {
  if (!Array.isArray(value) || value.some((c) => !Number.isInteger(c) || c < 0 || c >= nc)) {
    fail(name, `a list of class indices between 0 and ${nc - 1}`, value);
  }
  return value as number[];
}

/** Rounds an image size up to a multiple of the stride, as the reference does (with a warning). */
export function checkImageSize(
  name: string,
  value: unknown,
  stride: number,
  log: (line: string) => void,
): number {
  const size = checkInteger(name, value, 1);
  const rounded = Math.max(Math.ceil(size / stride) * stride, stride);
  if (rounded !== size)
    log(
      `WARNING: ${name} ${size} must be a multiple of max stride ${stride}, updating to ${rounded}`,
    );
  return rounded;
}

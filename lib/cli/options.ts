/** Parsers shared by CLI commands: each rejects a bad value with the flag and the value. */
import { InvalidArgumentError, Option } from 'commander';
import type { FreezeSpec } from '../model/freeze';
import { AMP_MODES, TRAIN_DEFAULTS } from '../options';

/** `--amp <mode>` for train, val and detect (no default here: the API's applies). */
export function ampOption(): Option {
  return new Option(
    '--amp <mode>',
    `mixed precision: auto (fp16 on CUDA, bf16 on a CPU with bf16 hardware, else fp32), bf16, fp16 (CUDA) or off (default ${TRAIN_DEFAULTS.amp})`,
  ).choices(AMP_MODES);
}

export function parseInteger(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^[-+]?\d+$/.test(value.trim()) || n < min) {
      throw new InvalidArgumentError(
        `Expected integer >= ${min} for ${name} but received ${JSON.stringify(value)}`,
      );
    }
    return n;
  };
}

export function parseNumber(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        `Expected number between ${min} and ${max} for ${name} but received ${JSON.stringify(value)}`,
      );
    }
    return n;
  };
}

/** `--freeze 10` (a count), `--freeze 0 1 2` (layers), `--freeze model.24. 'model.1*'` (prefixes, globs). */
export function freezeSpecFromArgs(values: string[] | undefined): FreezeSpec | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const numeric = values.every((v) => /^\d+$/.test(v));
  if (numeric) {
    const nums = values.map(Number);
    return nums.length === 1 ? nums[0]! : nums;
  }
  if (values.some((v) => /^\d+$/.test(v))) {
    throw new InvalidArgumentError(
      `Expected only layer numbers or only name prefixes for --freeze but received ${JSON.stringify(values.join(' '))}`,
    );
  }
  return values;
}

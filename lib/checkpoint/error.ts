import { Yolo5Error } from '../errors';

/** Throws the one error every checkpoint problem becomes: `<file>: <what is wrong>`. */
export function checkpointError(source: string, what: string): never {
  throw new Yolo5Error('E_CHECKPOINT', `${source}: ${what}`, { file: source });
}

/** A name or key from the file as shown in messages: a hostile file can make them megabytes long. */
export function short(value: unknown, max = 60): string {
  const text =
    typeof value === 'string'
      ? value
      : typeof value === 'object' && value !== null
        ? `<${(value as { pyType?: string }).pyType ?? 'object'}>`
        : String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

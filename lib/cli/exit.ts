import { fileError } from '../errors';

/**
 * The CLI's exit codes. A usage error is the command line's fault (an unknown flag, a value
 * outside its choices or range); a failure is anything the run itself met (a missing file, a bad
 * data set, a native error). An interrupted run saves, then exits 128 + the signal's number.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** Ctrl-C (SIGINT). */
  interrupted: 130,
  /** SIGTERM. */
  terminated: 143,
} as const;

/** A message as the CLI prints it: one line. */
export function oneLine(message: string): string {
  return message
    .replace(/^error: /, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

// What the user was doing when a system call failed, in the words of fileError's "Cannot …".
const SYSCALL_ACTIONS: Record<string, string> = {
  open: 'open',
  read: 'read',
  write: 'write',
  mkdir: 'create',
  rename: 'rename',
  unlink: 'remove',
  rmdir: 'remove',
  copyfile: 'copy',
  scandir: 'list',
  stat: 'read',
  lstat: 'read',
};

/**
 * A Node file-system error that reached the CLI unwrapped, as the one line fileError would give
 * (`Cannot open /x: no such file or folder (ENOENT)`): the user's mistake, whatever code let it
 * through, deserves the path and the reason rather than a stack trace. Undefined for anything else.
 */
export function systemErrorLine(e: unknown): string | undefined {
  const err = e as { code?: unknown; syscall?: unknown; path?: unknown } | null;
  if (!(e instanceof Error) || typeof err?.code !== 'string' || typeof err.syscall !== 'string')
    return undefined;
  if (typeof err.path !== 'string') return undefined;
  const action = SYSCALL_ACTIONS[err.syscall] ?? `${err.syscall} on`;
  return fileError(action, err.path, e).message;
}

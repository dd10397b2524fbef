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

/**
 * Ctrl-C and SIGTERM for long commands: the first stops the run after the current batch (it saves
 * the last finished epoch); a second one of the same signal quits at once. The command then exits
 * 130 (SIGINT) or 143 (SIGTERM), so scripts can tell an interrupted run from a finished one.
 */
import { EXIT } from './exit';

export interface Interrupt {
  signal: AbortSignal;
  /** The exit code for the signal received, if one was. */
  exitCode(): number | undefined;
  dispose(): void;
}

const CODES = { SIGINT: EXIT.interrupted, SIGTERM: EXIT.terminated } as const;

export function interruptOnSignals(out: (line: string) => void): Interrupt {
  const controller = new AbortController();
  let received: keyof typeof CODES | undefined;
  const seen = new Set<string>();
  const handlers = (Object.keys(CODES) as (keyof typeof CODES)[]).map((name) => {
    const handler = () => {
      if (seen.has(name)) process.exit(CODES[name]);
      seen.add(name);
      received ??= name;
      out(
        `\nStopping after this batch (${name === 'SIGINT' ? 'Ctrl-C' : name} again to quit now)...`,
      );
      controller.abort();
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  return {
    signal: controller.signal,
    exitCode: () => (received ? CODES[received] : undefined),
    dispose: () => {
      for (const [name, handler] of handlers) process.removeListener(name, handler);
    },
  };
}

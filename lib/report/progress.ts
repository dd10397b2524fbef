/**
 * Progress for long commands: a bar redrawn in place on a terminal; in a pipe (a log file, CI) a
 * full line at the end of each pass and at least every `intervalMs` during it, so a long epoch
 * never goes silent.
 */

export function bar(done: number, total: number, width = 20): string {
  const n = Math.round((Math.min(done, total) / Math.max(total, 1)) * width);
  return `${'█'.repeat(n)}${' '.repeat(width - n)}`;
}

/** Decides when a progress update is shown and how. */
export class ProgressPrinter {
  #lastLine = 0;
  #open = false;

  constructor(
    readonly write: (text: string) => void,
    readonly tty: boolean,
    readonly intervalMs = 10_000,
  ) {}

  /** Whether a pipe gets this update: the last one of a pass, or the first after the interval. */
  due(last: boolean, now = Date.now()): boolean {
    if (this.tty) return true;
    if (this.#lastLine === 0) this.#lastLine = now;
    if (!last && now - this.#lastLine < this.intervalMs) return false;
    this.#lastLine = now;
    return true;
  }

  /** Shows `line`: redrawn in place on a TTY (a newline after the last), else its own line when due. */
  update(line: string, last: boolean, now = Date.now()): void {
    if (!this.due(last, now)) return;
    if (this.tty) {
      this.write(`\r${line}\u001b[K${last ? '\n' : ''}`);
      this.#open = !last;
    } else this.write(`${line}\n`);
    if (last) this.#lastLine = 0;
  }

  /** Ends a bar left open (e.g. before other output). */
  close(): void {
    if (this.#open) this.write('\n');
    this.#open = false;
  }
}

/** The validation bar under the metrics table's header, as the reference shows it. */
export function valProgressLine(done: number, total: number, seconds: number): string {
  const pct = Math.round((done / Math.max(total, 1)) * 100);
  const rate = done / Math.max(seconds, 1e-9);
  return `${'Class'.padStart(22)}${['Images', 'Instances', 'P', 'R', 'mAP50', 'mAP50-95'].map((s) => s.padStart(11)).join('')}: ${String(pct).padStart(3)}%|${bar(done, total)}| ${done}/${total} [${seconds.toFixed(0)}s, ${rate.toFixed(2)}it/s]`;
}

/**
 * The validation bar: a `progress(done, total)` callback for val, which also takes training's
 * `valBatch` events ({ done, total }).
 */
export function valProgress(
  printer: ProgressPrinter,
): (e: number | { done: number; total: number }, total?: number) => void {
  let start = 0;
  return (e, t) => {
    const [done, total] = typeof e === 'number' ? [e, t ?? e] : [e.done, e.total];
    if (done === 1 || start === 0) start = performance.now() - 1;
    printer.update(
      valProgressLine(done, total, (performance.now() - start) / 1000),
      done === total,
    );
  };
}

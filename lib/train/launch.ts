/**
 * `--nproc N`: N ranks of the same command on this machine, with torchrun's variables on a free
 * loopback port and the threads split among them. Rank 0's output streams as it is; the other
 * ranks' lines are prefixed `[rank N]`. Ctrl-C and SIGTERM are forwarded once to every rank (each
 * runs in its own process group, so a terminal's Ctrl-C reaches only this launcher); when a rank
 * dies the others end too, and the run ends with that rank's message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as os from 'node:os';
import { Yolo5Error } from '../errors';

export interface LaunchOptions {
  nproc: number;
  /** The CLI script and its arguments (the command and flags, without --nproc). */
  script: string;
  args: string[];
  /** Threads in all (default: every core), split evenly among the ranks (at least 1 each). */
  threads?: number;
  env?: NodeJS.ProcessEnv;
  /** Where rank 0's error lines and the other ranks' prefixed lines go (default stderr). */
  err?: (line: string) => void;
  /** After a rank failed, how long the others may take to stop on their own (ms). */
  grace?: number;
}

interface Rank {
  rank: number;
  child: ChildProcess;
  lastError: string;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

/** A free TCP port on the loopback interface (the store binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/** `args` without `--name value` / `--name=value`, and the value it had. */
export function takeFlag(args: string[], name: string): { args: string[]; value?: string } {
  const out: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === name && i + 1 < args.length) value = args[++i];
    else if (a.startsWith(`${name}=`)) value = a.slice(name.length + 1);
    else out.push(a);
  }
  return value === undefined ? { args: out } : { args: out, value };
}

/** Splits a stream into lines for `write` (a last line without its newline at the end). */
function eachLine(stream: NodeJS.ReadableStream | null, write: (line: string) => void): void {
  if (!stream) return;
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) write(l);
  });
  stream.on('end', () => {
    if (rest) write(rest);
  });
}

function startRank(
  o: LaunchOptions,
  rank: number,
  port: number,
  threads: number,
  err: (line: string) => void,
): Rank {
  const env = {
    ...(o.env ?? process.env),
    WORLD_SIZE: String(o.nproc),
    RANK: String(rank),
    LOCAL_RANK: String(rank),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(port),
  };
  const child = spawn(
    process.execPath,
    [...process.execArgv, o.script, ...o.args, '--threads', String(threads)],
    // Rank 0's stdout is ours (a terminal keeps its progress bar); each rank its own group.
    { env, stdio: ['ignore', rank === 0 ? 'inherit' : 'pipe', 'pipe'], detached: true },
  );
  const r: Rank = { rank, child, lastError: '' };
  const prefix = rank === 0 ? '' : `[rank ${rank}] `;
  eachLine(child.stdout, (l) => err(prefix + l));
  eachLine(child.stderr, (l) => {
    if (l.trim()) r.lastError = l.replace(/^yolo5: /, '');
    err(prefix + l);
  });
  return r;
}

function describeExit(r: Rank): string {
  const how = r.exit?.signal
    ? `was killed by ${r.exit.signal}`
    : `exited with code ${r.exit?.code}`;
  return `rank ${r.rank} ${how}${r.lastError ? `: ${r.lastError}` : ''}`;
}

/** Runs the ranks to their end; resolves with the exit code for the whole run. */
export async function launch(o: LaunchOptions): Promise<number> {
  if (!Number.isInteger(o.nproc) || o.nproc < 2)
    throw new Yolo5Error('E_ARG', `Expected integer >= 2 for --nproc but received ${o.nproc}`);
  const err = o.err ?? ((line: string) => process.stderr.write(`${line}\n`));
  const total = o.threads ?? os.availableParallelism();
  const threads = Math.max(1, Math.floor(total / o.nproc));
  const port = await freePort();
  const ranks = Array.from({ length: o.nproc }, (_, rank) =>
    startRank(o, rank, port, threads, err),
  );
  const forward = (signal: NodeJS.Signals) => () => {
    for (const r of ranks) if (!r.exit) r.child.kill(signal);
  };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  let failed: Rank | undefined;
  let timers: NodeJS.Timeout[] = [];
  try {
    await Promise.all(
      ranks.map(
        (r) =>
          new Promise<void>((resolve) => {
            r.child.on('exit', (code, signal) => {
              r.exit = { code, signal };
              const bad = signal !== null || (code !== 0 && code !== 130 && code !== 143);
              if (bad && !failed) {
                failed = r;
                // The others stop at their next collective; whoever does not is ended.
                const left = () => ranks.filter((x) => !x.exit);
                timers.push(
                  setTimeout(
                    () => left().forEach((x) => x.child.kill('SIGTERM')),
                    o.grace ?? 30000,
                  ),
                  setTimeout(
                    () => left().forEach((x) => x.child.kill('SIGKILL')),
                    (o.grace ?? 30000) + 10000,
                  ),
                );
              }
              resolve();
            });
          }),
      ),
    );
  } finally {
    process.removeListener('SIGINT', onInt);
    process.removeListener('SIGTERM', onTerm);
    timers.forEach(clearTimeout);
    timers = [];
  }
  if (failed) {
    err(`yolo5: the run stopped because ${describeExit(failed)}`);
    return failed.exit?.code && failed.exit.code > 0 ? failed.exit.code : 1;
  }
  // Interrupted (130, 143) or finished (0): rank 0's code is the run's.
  return ranks[0]!.exit?.code ?? 1;
}

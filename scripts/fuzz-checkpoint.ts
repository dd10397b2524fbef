/**
 * Fuzzes the checkpoint reader: mutates a real checkpoint (bytes, zip fields, the pickle inside,
 * re-zipped with a correct CRC) and requires every outcome to be a checkpoint or a Yolo5Error.
 *
 *   node dist-test/scripts/fuzz-checkpoint.js [--iterations N] [--seed S] [--time-limit-s T]
 *        [--workers W] [--input FILE]
 *
 * Iteration i is a pure function of (seed, i), so any finding replays with the same seed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Yolo5Error } from '../lib/errors';
import { parseCheckpoint } from '../lib/checkpoint';
import { ZipReader, zipToBuffer } from '../lib/checkpoint/zip';
import { fixture } from '../test/helpers';

export const STRATEGIES = [
  'flip',
  'truncate',
  'insert',
  'duplicate',
  'zip-field',
  'pickle',
] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface FuzzOptions {
  iterations: number;
  seed: number;
  /** Stops early after this many seconds. */
  timeLimitS?: number;
  /** The checkpoint to mutate (default: the fixture `yolov5n-shapes5.pt`). */
  input?: Uint8Array;
  /** Runs iterations first, first + step, … (how workers split the work). */
  first?: number;
  step?: number;
}

export interface FuzzCrash {
  iteration: number;
  strategy: Strategy;
  error: string;
}

export interface FuzzSummary {
  iterations: number;
  elapsedMs: number;
  ok: number;
  /** Yolo5Error count by normalised message prefix. */
  errors: Record<string, number>;
  byStrategy: Record<string, { ok: number; rejected: number }>;
  crashes: FuzzCrash[];
  slowest: { iteration: number; strategy: Strategy; ms: number };
}

// ---- deterministic randomness ----------------------------------------------------------------

/** mulberry32, seeded by a hash of (seed, iteration). */
function rngFor(seed: number, iteration: number): () => number {
  let a = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(iteration + 1, 0xc2b2ae35);
  a = (a ^ (a >>> 16)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  constructor(readonly next: () => number) {}
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// ---- the corpus: the checkpoint and where its structure lies -----------------------------------

interface Corpus {
  bytes: Buffer;
  /** Byte ranges holding zip structure or the pickle: where mutations find bugs. */
  hot: [number, number][];
  /** Offsets of 16/32/64-bit zip header fields (sizes, offsets, counts, name lengths). */
  fields: { at: number; width: 2 | 4 | 8 }[];
  entries: { name: string; data: Uint8Array; crc32: number }[];
  pickleIndex: number;
}

function buildCorpus(input: Uint8Array): Corpus {
  const bytes = Buffer.from(input);
  const zip = new ZipReader(bytes, 'corpus');
  const hot: [number, number][] = [];
  const fields: Corpus['fields'] = [];
  const entries: Corpus['entries'] = [];
  let pickleIndex = -1;
  let cdStart = bytes.length;
  for (const entry of zip.entries.values()) {
    hot.push([entry.localOffset, entry.dataOffset]);
    for (const at of [14, 18, 22]) fields.push({ at: entry.localOffset + at, width: 4 });
    for (const at of [26, 28]) fields.push({ at: entry.localOffset + at, width: 2 });
    if (entry.name.endsWith('/data.pkl')) {
      hot.push([entry.dataOffset, entry.dataOffset + entry.compressedSize]);
      pickleIndex = entries.length;
    }
    cdStart = Math.min(cdStart, entry.dataOffset + entry.compressedSize);
    entries.push({ name: entry.name, data: zip.read(entry.name), crc32: entry.crc32 });
  }
  hot.push([cdStart, bytes.length]);
  // central records: sizes, name/extra lengths, local offsets
  for (let at = cdStart; at + 46 <= bytes.length && bytes.readUInt32LE(at) === 0x02014b50;) {
    for (const off of [16, 20, 24, 42]) fields.push({ at: at + off, width: 4 });
    for (const off of [28, 30, 32]) fields.push({ at: at + off, width: 2 });
    at +=
      46 + bytes.readUInt16LE(at + 28) + bytes.readUInt16LE(at + 30) + bytes.readUInt16LE(at + 32);
  }
  // the end records: every field of the last 98 bytes (zip64 end, locator, end)
  for (let at = Math.max(cdStart, bytes.length - 98); at + 8 <= bytes.length; at += 2) {
    fields.push({ at, width: 2 }, { at, width: 4 }, { at, width: 8 });
  }
  if (pickleIndex < 0) throw new Error('fuzz input has no data.pkl');
  return { bytes, hot, fields, entries, pickleIndex };
}

const INTERESTING = [
  0,
  1,
  0x7f,
  0x80,
  0xff,
  0x7fff,
  0xffff,
  0x7fffffff,
  0xffffffff,
  2 ** 32,
  10 * 2 ** 30,
];

function writeField(buf: Buffer, at: number, width: number, value: number): void {
  if (width === 2) buf.writeUInt16LE(value & 0xffff, at);
  else if (width === 4) buf.writeUInt32LE(value >>> 0, at);
  else {
    buf.writeUInt32LE((value % 2 ** 32) >>> 0, at);
    buf.writeUInt32LE(Math.floor(value / 2 ** 32) >>> 0, at + 4);
  }
}

function position(rng: Random, corpus: Corpus, length: number): number {
  if (rng.chance(0.5)) return rng.int(length);
  const [a, b] = rng.pick(corpus.hot);
  return Math.min(length - 1, a + rng.int(Math.max(1, b - a)));
}

/** Mutates bytes: flips, inserts, deletes, duplicates, splices in interesting ints or opcodes. */
function mutateBytes(rng: Random, input: Uint8Array, rounds: number): Buffer {
  let buf = Buffer.from(input);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(Math.max(1, buf.length));
    switch (rng.int(6)) {
      case 0:
        buf[at] ^= 1 + rng.int(255);
        break;
      case 1:
        buf = Buffer.concat([
          buf.subarray(0, at),
          randomBytes(rng, 1 + rng.int(16)),
          buf.subarray(at),
        ]);
        break;
      case 2:
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + rng.int(32))]);
        break;
      case 3: {
        const from = rng.int(buf.length);
        const chunk = buf.subarray(from, from + 1 + rng.int(64));
        buf = Buffer.concat([buf.subarray(0, at), chunk, buf.subarray(at)]);
        break;
      }
      case 4:
        if (at + 4 <= buf.length) buf.writeUInt32LE(rng.pick(INTERESTING) >>> 0, at);
        break;
      default:
        // a random pickle opcode byte, often with a plausible argument after it
        buf[at] = rng.pick([
          0x28,
          0x2e,
          0x4a,
          0x4b,
          0x51,
          0x52,
          0x58,
          0x62,
          0x63,
          0x68,
          0x71,
          0x72,
          0x73,
          0x74,
          0x75,
          0x81,
          0x8a,
          0x8b,
          0x8c,
          0x93,
          0x94,
          0x95,
          rng.int(256),
        ]);
    }
  }
  return buf;
}

function randomBytes(rng: Random, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(256);
  return out;
}

/** Builds the mutated input of one iteration. `work` is a scratch copy of the corpus bytes. */
function mutate(
  rng: Random,
  corpus: Corpus,
  strategy: Strategy,
  work: Buffer,
): { input: Uint8Array; undo?: () => void } {
  const n = work.length;
  switch (strategy) {
    case 'flip': {
      // in place, undone afterwards: no 3.7 MB copy per iteration
      const saved: [number, number][] = [];
      for (let k = 1 + rng.int(8); k > 0; k--) {
        const at = position(rng, corpus, n);
        saved.push([at, work[at]!]);
        work[at] = work[at]! ^ (1 + rng.int(255));
      }
      return { input: work, undo: () => saved.reverse().forEach(([at, b]) => (work[at] = b)) };
    }
    case 'truncate':
      return { input: work.subarray(0, position(rng, corpus, n)) };
    case 'insert': {
      const at = position(rng, corpus, n);
      return {
        input: Buffer.concat([
          work.subarray(0, at),
          randomBytes(rng, 1 + rng.int(64)),
          work.subarray(at),
        ]),
      };
    }
    case 'duplicate': {
      const from = position(rng, corpus, n);
      const chunk = work.subarray(from, from + 1 + rng.int(4096));
      const at = position(rng, corpus, n);
      return { input: Buffer.concat([work.subarray(0, at), chunk, work.subarray(at)]) };
    }
    case 'zip-field': {
      const saved: [number, Buffer][] = [];
      for (let k = 1 + rng.int(2); k > 0; k--) {
        const field = rng.pick(corpus.fields);
        if (field.at + field.width > n) continue;
        saved.push([field.at, Buffer.from(work.subarray(field.at, field.at + field.width))]);
        const old = field.width === 2 ? work.readUInt16LE(field.at) : work.readUInt32LE(field.at);
        const value = rng.chance(0.5)
          ? rng.pick(INTERESTING)
          : Math.max(0, old + rng.int(129) - 64);
        writeField(work, field.at, field.width, value);
      }
      return { input: work, undo: () => saved.reverse().forEach(([at, b]) => b.copy(work, at)) };
    }
    case 'pickle': {
      const original = corpus.entries[corpus.pickleIndex]!;
      const pickle = mutateBytes(rng, original.data, 1 + rng.int(4));
      const entries = corpus.entries.map((e, i) =>
        i === corpus.pickleIndex
          ? { name: e.name, data: pickle }
          : { name: e.name, data: e.data, options: { crc32: e.crc32 } },
      );
      return { input: zipToBuffer(entries) };
    }
  }
}

/** Groups messages: the file name, quoted names and numbers are masked. */
export function messagePrefix(message: string, source: string): string {
  return message
    .replace(source, '')
    .replace(/^: /, '')
    .replace(/^[^ ]*data\.pkl at byte \d+: /, 'pickle: ')
    .replace(/'[^']*'/g, "'…'")
    .replace(/\b0x[0-9a-f]+\b|\b[0-9a-f]{8}\b/gi, 'H')
    .replace(/-?\b\d+(\.\d+)?(e[-+]?\d+)?\b/g, 'N')
    .slice(0, 100);
}

const SOURCE = 'fuzz.pt';

/** Runs the fuzzer on this thread. */
export function runFuzz(options: FuzzOptions): FuzzSummary {
  const corpus = buildCorpus(options.input ?? fs.readFileSync(fixture('yolov5n-shapes5.pt')));
  const work = Buffer.from(corpus.bytes);
  const deadline =
    options.timeLimitS === undefined ? Infinity : Date.now() + options.timeLimitS * 1000;
  const step = options.step ?? 1;
  const summary: FuzzSummary = {
    iterations: 0,
    elapsedMs: 0,
    ok: 0,
    errors: {},
    byStrategy: Object.fromEntries(STRATEGIES.map((s) => [s, { ok: 0, rejected: 0 }])),
    crashes: [],
    slowest: { iteration: -1, strategy: 'flip', ms: 0 },
  };
  const start = Date.now();
  for (let i = options.first ?? 0; i < options.iterations; i += step) {
    if (Date.now() > deadline) break;
    const rng = new Random(rngFor(options.seed, i));
    const strategy = rng.pick(STRATEGIES);
    const t0 = performance.now();
    const { input, undo } = mutate(rng, corpus, strategy, work);
    try {
      parseCheckpoint(input, SOURCE);
      summary.ok++;
      summary.byStrategy[strategy]!.ok++;
    } catch (err) {
      if (err instanceof Yolo5Error && err.code === 'E_CHECKPOINT') {
        const prefix = messagePrefix(err.message, SOURCE);
        summary.errors[prefix] = (summary.errors[prefix] ?? 0) + 1;
        summary.byStrategy[strategy]!.rejected++;
      } else {
        summary.crashes.push({
          iteration: i,
          strategy,
          error: (err as Error)?.stack ?? String(err),
        });
        saveCrash(options.seed, i, input);
      }
    } finally {
      undo?.();
    }
    const ms = performance.now() - t0;
    if (ms > summary.slowest.ms) summary.slowest = { iteration: i, strategy, ms };
    summary.iterations++;
  }
  summary.elapsedMs = Date.now() - start;
  return summary;
}

function saveCrash(seed: number, iteration: number, input: Uint8Array): void {
  const dir = path.join(os.tmpdir(), 'yolo5-fuzz-crashes');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `seed${seed}-iter${iteration}.pt`), input);
}

function merge(parts: FuzzSummary[], elapsedMs: number): FuzzSummary {
  const out: FuzzSummary = {
    iterations: 0,
    elapsedMs,
    ok: 0,
    errors: {},
    byStrategy: Object.fromEntries(STRATEGIES.map((s) => [s, { ok: 0, rejected: 0 }])),
    crashes: [],
    slowest: { iteration: -1, strategy: 'flip', ms: 0 },
  };
  for (const p of parts) {
    out.iterations += p.iterations;
    out.ok += p.ok;
    for (const [k, v] of Object.entries(p.errors)) out.errors[k] = (out.errors[k] ?? 0) + v;
    for (const [k, v] of Object.entries(p.byStrategy)) {
      out.byStrategy[k]!.ok += v.ok;
      out.byStrategy[k]!.rejected += v.rejected;
    }
    out.crashes.push(...p.crashes);
    if (p.slowest.ms > out.slowest.ms) out.slowest = p.slowest;
  }
  return out;
}

/** Splits the iterations over worker threads (iteration i runs on worker i mod W). */
export async function runFuzzParallel(options: FuzzOptions, workers: number): Promise<FuzzSummary> {
  if (workers <= 1) return runFuzz(options);
  const start = Date.now();
  const parts = await Promise.all(
    Array.from({ length: workers }, (_, w) => {
      return new Promise<FuzzSummary>((resolve, reject) => {
        const worker = new Worker(__filename, {
          workerData: { fuzzCheckpoint: { ...options, first: w, step: workers } },
        });
        worker.once('message', (summary: FuzzSummary) => resolve(summary));
        worker.once('error', reject);
        worker.once(
          'exit',
          (code) => code !== 0 && reject(new Error(`fuzz worker ${w} exited with ${code}`)),
        );
      });
    }),
  );
  return merge(parts, Date.now() - start);
}

export function formatSummary(s: FuzzSummary, seed: number): string {
  const lines = [
    `fuzz-checkpoint: ${s.iterations} iterations in ${(s.elapsedMs / 1000).toFixed(1)} s ` +
      `(${((s.elapsedMs / Math.max(1, s.iterations)) * 1000).toFixed(0)} µs each), seed ${seed}`,
    `  read ok: ${s.ok}   rejected (Yolo5Error E_CHECKPOINT): ${s.iterations - s.ok - s.crashes.length}   ` +
      `other exceptions: ${s.crashes.length}`,
    `  slowest: iteration ${s.slowest.iteration} (${s.slowest.strategy}) ${s.slowest.ms.toFixed(1)} ms`,
    '  by strategy:',
    ...Object.entries(s.byStrategy).map(
      ([k, v]) =>
        `    ${k.padEnd(10)} ok ${String(v.ok).padStart(7)}  rejected ${String(v.rejected).padStart(7)}`,
    ),
    '  rejections by message:',
    ...Object.entries(s.errors)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 40)
      .map(([k, v]) => `    ${String(v).padStart(7)}  ${k}`),
  ];
  if (Object.keys(s.errors).length > 40)
    lines.push(`    … ${Object.keys(s.errors).length - 40} more kinds`);
  for (const c of s.crashes.slice(0, 10)) {
    lines.push(
      `  CRASH at iteration ${c.iteration} (${c.strategy}):`,
      `    ${c.error.split('\n').slice(0, 6).join('\n    ')}`,
    );
  }
  if (s.crashes.length > 0)
    lines.push(`  crashing inputs saved in ${path.join(os.tmpdir(), 'yolo5-fuzz-crashes')}`);
  return lines.join('\n');
}

function parseArgs(argv: string[]): { options: FuzzOptions; workers: number } {
  const options: FuzzOptions = { iterations: 10_000, seed: 1 };
  // one fuzzing thread already keeps a second core busy with GC: use half the cores
  let workers = Math.max(1, Math.min(4, Math.floor(os.availableParallelism() / 2)));
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    const num = (): number => {
      const n = Number(value);
      if (value === undefined || !Number.isFinite(n) || n < 0) {
        throw new Error(`Expected a non-negative number for ${flag} but received ${String(value)}`);
      }
      i++;
      return n;
    };
    if (flag === '--iterations') options.iterations = Math.floor(num());
    else if (flag === '--seed') options.seed = Math.floor(num());
    else if (flag === '--time-limit-s') options.timeLimitS = num();
    else if (flag === '--workers') workers = Math.max(1, Math.floor(num()));
    else if (flag === '--input' && value !== undefined) {
      options.input = fs.readFileSync(value);
      i++;
    } else
      throw new Error(
        `unknown option ${flag} (--iterations N --seed S --time-limit-s T --workers W --input FILE)`,
      );
  }
  return { options, workers };
}

async function main(): Promise<void> {
  const { options, workers } = parseArgs(process.argv.slice(2));
  const summary = await runFuzzParallel(options, workers);
  console.log(formatSummary(summary, options.seed));
  process.exitCode = summary.crashes.length > 0 ? 1 : 0;
}

const job = (workerData as { fuzzCheckpoint?: FuzzOptions } | null)?.fuzzCheckpoint;
if (!isMainThread && job !== undefined) {
  parentPort!.postMessage(runFuzz(job));
} else if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 2;
  });
}

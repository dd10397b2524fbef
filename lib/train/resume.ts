/**
 * Resuming: `prepareResume` reads the run's checkpoint (once) into what the other phases need;
 * `repairRun` puts the run folder back the way an uninterrupted run would have it (results.csv
 * from the checkpoint's rows, best.pt when a kill interrupted its copy, no stale temporaries).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { copyCheckpoint, loadCheckpoint, type Checkpoint } from '../checkpoint';
import { Yolo5Error } from '../errors';
import { TRAIN_DEFAULTS } from '../options';
import { removeStaleTemporaries, writeTextAtomic } from '../report/files';
import { optionsFromSaved } from '../report/opt';
import { emptyTrainState, resultsText, trainStateFrom, type TrainState } from './state';
import type { ResolvedTrainOptions, TrainOptions } from './types';

export interface ResumePoint {
  /** The checkpoint resumed from (weights/last.pt of the run). */
  file: string;
  saveDir: string;
  checkpoint: Checkpoint;
  /** The run's own options (opt) and hyperparameters (hyp), as saved. */
  saved: TrainOptions;
  /** A finished run (a stripped file: EMA weights only, no optimizer): it can only be extended. */
  finished: boolean;
  state: TrainState;
  /** Whether the file carried its training state (results rows, best epoch): files since 0.1. */
  hasState: boolean;
  /** The first epoch still to train. */
  startEpoch: number;
}

/** The files the run folder's writers use, whose temporaries a kill can leave. */
export const RUN_FILES = ['last.pt', 'best.pt', 'results.csv', 'opt.yaml', 'hyp.yaml'] as const;

function findLastRun(project: string): string {
  if (!fs.existsSync(project)) throw new Yolo5Error('E_FILE', `--resume: no runs in ${project}`);
  let best: { file: string; mtime: number } | undefined;
  for (const d of fs.readdirSync(project)) {
    const f = path.join(project, d, 'weights', 'last.pt');
    if (fs.existsSync(f)) {
      const mtime = fs.statSync(f).mtimeMs;
      if (!best || mtime > best.mtime) best = { file: f, mtime };
    }
  }
  if (!best) throw new Yolo5Error('E_FILE', `--resume: no weights/last.pt under ${project}`);
  return best.file;
}

/** Reads the checkpoint to resume from: `resume` is a last.pt, or true for the newest run's. */
export async function prepareResume(
  resume: true | string,
  project: string | undefined,
): Promise<ResumePoint> {
  const file = path.resolve(
    typeof resume === 'string'
      ? resume
      : findLastRun(path.resolve(project ?? TRAIN_DEFAULTS.project)),
  );
  if (!fs.existsSync(file)) throw new Yolo5Error('E_FILE', `--resume: ${file} not found`, { file });
  const ck = await loadCheckpoint(file);
  if (ck.kind !== 'yolo5' || ck.epoch === undefined || !ck.opt) {
    throw new Yolo5Error('E_CHECKPOINT', `--resume: ${file} is not a yolo5 training checkpoint`, {
      file,
    });
  }
  const stored = trainStateFrom(ck.meta['train_state']);
  const finished = ck.epoch < 0;
  if (finished && !stored) {
    throw new Yolo5Error(
      'E_CHECKPOINT',
      `--resume: ${file} is a finished run written without its training state (an older yolo5), so it cannot be continued`,
      { file },
    );
  }
  const state = stored ?? {
    ...emptyTrainState(),
    lastEpoch: ck.epoch,
    updates: typeof ck.updates === 'number' ? ck.updates : 0,
  };
  return {
    file,
    saveDir: path.dirname(path.dirname(file)),
    checkpoint: ck,
    saved: {
      // Today's files hold camelCase options; the reference's snake_case opt reads as well.
      ...(optionsFromSaved(ck.opt) as TrainOptions),
      ...(ck.hyp ? { hyp: ck.hyp as TrainOptions['hyp'] } : {}),
    },
    finished,
    state,
    hasState: stored !== undefined,
    startEpoch: state.lastEpoch + 1,
  };
}

/** The run's epoch total after resuming, checked against what is done; says what changed. */
export function resumedEpochs(
  point: ResumePoint,
  opts: ResolvedTrainOptions,
  given: boolean,
  log: (line: string) => void,
): number {
  const done = point.startEpoch;
  const saved = typeof point.saved.epochs === 'number' ? point.saved.epochs : opts.epochs;
  if (point.finished && (!given || opts.epochs <= done)) {
    throw new Yolo5Error(
      'E_ARG',
      `--resume: ${point.file} is a finished run (${done} epochs); pass --epochs (epochs) greater than ${done} to continue it`,
      { file: point.file },
    );
  }
  if (opts.epochs < done) {
    throw new Yolo5Error(
      'E_ARG',
      `--resume: ${point.file} has already trained ${done} epochs; expected --epochs (epochs) of at least ${done} but received ${opts.epochs}`,
      { file: point.file, value: opts.epochs },
    );
  }
  if (opts.epochs !== saved) {
    log(
      `${opts.epochs > saved ? 'Extending' : 'Shortening'} the run from ${saved} to ${opts.epochs} epochs: ` +
        `the learning-rate schedule (and --close-mosaic) is recomputed for ${opts.epochs} epochs`,
    );
  }
  if (point.finished) {
    log(
      `${point.file} is a finished run: it continues from its final EMA weights (stored as float16) with a fresh ` +
        'optimizer state (no momentum), so it is not what a run of that length from the start would give',
    );
  }
  log(`Resuming training from ${point.file} (epoch ${done})`);
  return opts.epochs;
}

/** Removes what killed writers left (`*.tmp` beside the run's files). */
export function removeRunTemporaries(saveDir: string, log: (line: string) => void): void {
  const removed = [
    ...removeStaleTemporaries(saveDir, RUN_FILES),
    ...removeStaleTemporaries(path.join(saveDir, 'weights'), RUN_FILES),
  ];
  if (removed.length > 0)
    log(
      `Removed ${removed.length} temporary file(s) an interrupted write left: ${removed.join(' ')}`,
    );
}

/**
 * Makes the run folder what the checkpoint says: results.csv holds exactly its rows (a kill
 * between the checkpoint and the row append loses none), and best.pt is restored when the
 * checkpoint's epoch was the best and a kill interrupted the copy.
 */
export async function repairRun(
  point: ResumePoint,
  opts: ResolvedTrainOptions,
  log: (line: string) => void,
): Promise<void> {
  removeRunTemporaries(point.saveDir, log);
  const csv = path.join(point.saveDir, 'results.csv');
  if (point.hasState) {
    const text = resultsText(point.state.results);
    const before = fs.existsSync(csv) ? fs.readFileSync(csv, 'utf8') : undefined;
    if (before !== text) {
      writeTextAtomic(csv, text);
      log(`Restored ${csv} from ${point.file} (${point.state.results.length} epochs)`);
    }
  } else if (!fs.existsSync(csv)) writeTextAtomic(csv, resultsText([]));
  const best = path.join(point.saveDir, 'weights', 'best.pt');
  const { bestEpoch, lastEpoch } = point.state;
  if (opts.noweights || opts.nosave || bestEpoch < 0) return;
  if (bestEpoch === lastEpoch && !point.finished) {
    // The checkpoint is the best epoch: best.pt is its copy (again, if a kill cut the copy short).
    if (!fs.existsSync(best)) log(`Restored ${best} from ${point.file} (epoch ${bestEpoch})`);
    await copyCheckpoint(point.file, best);
  } else if (!fs.existsSync(best)) {
    log(`WARNING: ${best} (epoch ${bestEpoch}) is missing; only a better epoch writes it again`);
  }
}

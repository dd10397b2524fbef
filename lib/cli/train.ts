/**
 * `yolo5 train`: the reference's flags; progress per epoch; runs/train/exp* with weights and
 * results.csv. `--evolve [N]` runs hyperparameter evolution (runs/evolve/exp*) with the same flags.
 * Defaults come from TRAIN_DEFAULTS (lib/options.ts): flags not given are not passed, so a resumed
 * run keeps its own values.
 */
import { Command, Option } from 'commander';
import { Yolo5Error } from '../errors';
import {
  CACHE_MODES,
  EVOLVE_DEFAULTS,
  EVOLVE_PARENTS,
  OPTIMIZERS,
  TRAIN_DEFAULTS as D,
  type AmpMode,
  type EvolveParent,
  type OptimizerName,
} from '../options';
import { distributedFromEnv } from '../train/dist';
import { evolve } from '../train/evolve';
import { launch, takeFlag } from '../train/launch';
import { bar, ProgressPrinter, valProgress } from '../report/progress';
import { train, type BatchEvent, type TrainOptions, type TrainResult } from '../train/train';
import { EXIT } from './exit';
import { interruptOnSignals } from './interrupt';
import { ampOption, freezeSpecFromArgs, parseInteger, parseNumber } from './options';

interface TrainCliOptions {
  data?: string;
  cfg?: string;
  weights?: string;
  hyp?: string;
  epochs?: number;
  batch?: number;
  imgsz?: number;
  rect?: boolean;
  multiScale?: boolean;
  imageWeights?: boolean;
  resume?: boolean | string;
  nosave?: boolean;
  noval?: boolean;
  noautoanchor?: boolean;
  noplots?: boolean;
  cache?: string | boolean;
  workers?: number;
  optimizer?: OptimizerName;
  cosLr?: boolean;
  labelSmoothing?: number;
  patience?: number;
  freeze?: string[];
  freezeBn?: boolean;
  syncBn?: boolean;
  nproc?: number;
  seed?: number;
  singleCls?: boolean;
  closeMosaic?: number;
  project?: string;
  name?: string;
  existOk?: boolean;
  threads?: number;
  device?: string;
  amp?: AmpMode;
  evolve?: number;
  evolveParent?: EvolveParent;
  resumeEvolve?: string;
}

function memGB(): string {
  return `${(process.memoryUsage().rss / 1e9).toFixed(2)}G`;
}

const def = (v: unknown) => `(default ${String(v)})`;

/** The flags of training proper (data, model, schedule, augmentation, saving). */
function addTrainingFlags(c: Command): Command {
  return c
    .option('--data <yaml>', 'data set yaml (default: the built-in target set shapes-b)')
    .option(
      '--cfg <yaml>',
      `model yaml or bundled name (default ${D.cfg}; ${D.builtin.cfg} from scratch on the built-in data)`,
    )
    .option(
      '--weights <file>',
      "initial weights (.pt from Python YOLOv5, a state dict, or ours; '' for none; default without --data and --cfg: the bundled models/yolov5n-shapes.pt)",
    )
    .option('--hyp <yaml>', 'hyperparameters (default models/hyps/hyp.scratch-low.yaml)')
    .option(
      '--epochs <n>',
      `epochs ${def(D.epochs)}; with --resume, continue the run to N epochs`,
      parseInteger('--epochs', 1),
    )
    .option(
      '--batch-size, --batch <n>',
      `batch size ${def(D.batch)}`,
      parseInteger('--batch-size', 1),
    )
    .option(
      '--img, --imgsz <n>',
      `train and val image size in pixels (default ${D.imgsz}; ${D.builtin.imgsz} on the built-in data)`,
      parseInteger('--img', 32),
    )
    .option('--rect', 'rectangular batches (no mosaic)')
    .option('--multi-scale', 'vary the image size ±50% per batch')
    .option('--image-weights', 'sample images favouring poorly detected classes')
    .option('--resume [last.pt]', 'resume the newest run, or the given last.pt')
    .option('--nosave', 'only save the final checkpoint')
    .option('--noval', 'only validate the final epoch')
    .option('--noautoanchor', 'skip the anchor check')
    .option('--noplots', 'save no plots or mosaics (TensorBoard scalars are still written)')
    .addOption(new Option('--cache [mode]', 'keep decoded images in memory').choices(CACHE_MODES))
    .option(
      '--workers <n>',
      `data loader threads (default: one per core, at most 8: ${D.workers})`,
      parseInteger('--workers', 0),
    )
    .addOption(
      new Option('--optimizer <name>', `optimizer ${def(D.optimizer)}`).choices(OPTIMIZERS),
    )
    .option('--cos-lr', 'cosine learning-rate schedule')
    .option(
      '--label-smoothing <eps>',
      `label smoothing ${def(D.labelSmoothing)}`,
      parseNumber('--label-smoothing', 0, 0.99),
    )
    .option(
      '--patience <n>',
      `early stop after N epochs without improvement ${def(D.patience)}`,
      parseInteger('--patience', 0),
    );
}

/** Freezing, seeding, devices, run folders and evolution. */
function addRunFlags(c: Command): Command {
  return c
    .option(
      '--freeze <n...>',
      'freeze the first N layers, the listed layers, or name prefixes/globs',
    )
    .option('--freeze-bn', "also hold frozen layers' BatchNorm statistics")
    .option(
      '--nproc <n>',
      'distributed: train with N ranks on this machine (threads split among them)',
      parseInteger('--nproc', 1),
    )
    .option('--sync-bn', 'distributed: BatchNorm statistics over every rank (SyncBatchNorm)')
    .option('--seed <n>', `random seed ${def(D.seed)}`, parseInteger('--seed', 0))
    .option('--single-cls', 'train as a single class')
    .option(
      '--close-mosaic <n>',
      `turn mosaic off for the last N epochs ${def(D.closeMosaic)}`,
      parseInteger('--close-mosaic', 0),
    )
    .option(
      '--threads <n>',
      `LibTorch threads (default: all cores, ${D.threads})`,
      parseInteger('--threads', 1),
    )
    .option('--device <d>', 'cpu (default), a CUDA device index such as 0, or cuda:N')
    .addOption(ampOption())
    .option(
      '--project <dir>',
      `runs folder (default ${D.project}; ${EVOLVE_DEFAULTS.project} with --evolve)`,
    )
    .option('--name <name>', `run name ${def(D.name)}`)
    .option('--exist-ok', 'reuse an existing run folder')
    .addOption(
      new Option(
        '--evolve [generations]',
        `evolve hyperparameters: N generations of one short training each (N default ${EVOLVE_DEFAULTS.generations})`,
      )
        .argParser(parseInteger('--evolve', 1))
        .preset(String(EVOLVE_DEFAULTS.generations)),
    )
    .addOption(
      new Option(
        '--evolve-parent <mode>',
        `evolution parent: single (one of the best, by fitness) or weighted (their mean) ${def(EVOLVE_DEFAULTS.parent)}`,
      ).choices(EVOLVE_PARENTS),
    )
    .option(
      '--resume-evolve <dir>',
      'continue the evolution in this folder (with --evolve N: up to N generations in total)',
    );
}

/** The flags given, as TrainOptions (flags not given stay unset: the defaults are the API's). */
function toTrainOptions(o: TrainCliOptions, log: (line: string) => void): TrainOptions {
  const freeze = freezeSpecFromArgs(o.freeze);
  const given = <K extends keyof TrainOptions>(key: K, value: TrainOptions[K] | undefined) =>
    value === undefined ? {} : { [key]: value };
  const flag = (value: boolean | undefined) => (value ? true : undefined);
  return {
    ...given('data', o.data),
    ...given('cfg', o.cfg),
    ...given('weights', o.weights),
    ...given('hyp', o.hyp),
    ...given('resume', o.resume),
    ...given('freeze', freeze),
    ...given('workers', o.workers),
    ...given('threads', o.threads),
    ...given('device', o.device),
    ...given('amp', o.amp),
    ...given('epochs', o.epochs),
    ...given('batch', o.batch),
    ...given('imgsz', o.imgsz),
    ...given('rect', flag(o.rect)),
    ...given('multiScale', flag(o.multiScale)),
    ...given('imageWeights', flag(o.imageWeights)),
    ...given('nosave', flag(o.nosave)),
    ...given('noval', flag(o.noval)),
    ...given('noautoanchor', flag(o.noautoanchor)),
    ...given('noplots', flag(o.noplots)),
    ...given('cache', o.cache === undefined ? undefined : true),
    ...given('optimizer', o.optimizer),
    ...given('cosLr', flag(o.cosLr)),
    ...given('labelSmoothing', o.labelSmoothing),
    ...given('patience', o.patience),
    ...given('freezeBn', flag(o.freezeBn)),
    ...given('syncBn', flag(o.syncBn)),
    ...given('seed', o.seed),
    ...given('singleCls', flag(o.singleCls)),
    ...given('closeMosaic', o.closeMosaic),
    ...given('project', o.project),
    ...given('name', o.name),
    ...given('existOk', flag(o.existOk)),
    log,
  };
}

/**
 * Prints batch progress: one updating line per epoch on a terminal; in a pipe the epoch's last
 * line and one at least every 10 s of a long epoch.
 */
function progressPrinter(out: (line: string) => void): {
  printer: ProgressPrinter;
  onBatch: (p: BatchEvent) => void;
  reset: () => void;
} {
  const printer = new ProgressPrinter(
    (s) => process.stdout.write(s),
    process.stdout.isTTY === true,
  );
  let header = false;
  const cols = (p: BatchEvent) =>
    [`${p.epoch}/${p.epochs - 1}`, memGB(), p.lbox.toFixed(4), p.lobj.toFixed(4), p.lcls.toFixed(4)]
      .concat([String(p.instances), String(p.size)])
      .map((s) => s.padStart(11))
      .join('');
  const line = (p: BatchEvent) =>
    `${cols(p)}: ${bar(p.batch + 1, p.batches)} ${p.batch + 1}/${p.batches} ` +
    `[${p.seconds.toFixed(0)}s, ${((p.batch + 1) / Math.max(p.seconds, 1e-9)).toFixed(2)}it/s]`;
  const onBatch = (p: BatchEvent) => {
    if (!header) {
      out(
        ['Epoch', 'mem', 'box_loss', 'obj_loss', 'cls_loss', 'Instances', 'Size']
          .map((s) => s.padStart(11))
          .join(''),
      );
      header = true;
    }
    printer.update(line(p), p.batch === p.batches - 1);
  };
  return { printer, onBatch, reset: () => (header = false) };
}

function summary(r: TrainResult): string {
  const where = r.last
    ? `weights in ${r.saveDir}/weights`
    : `no weights saved, results in ${r.saveDir}`;
  return `Training ${r.status}: best fitness ${r.bestFitness.toFixed(4)}, ${where}`;
}

/** `--nproc N`: this command again as N ranks (lib/train/launch.ts); resolves with the exit code. */
async function launchRanks(o: TrainCliOptions, raw: string[], evolving: boolean): Promise<number> {
  if (evolving)
    throw new Yolo5Error('E_ARG', '--nproc does not combine with --evolve: evolve in one process');
  if (process.env.WORLD_SIZE !== undefined && process.env.WORLD_SIZE !== '1')
    throw new Yolo5Error(
      'E_ARG',
      `--nproc starts its own ranks, but WORLD_SIZE=${process.env.WORLD_SIZE} says this process already is one: drop --nproc or the variable`,
    );
  const args = takeFlag(takeFlag(raw.slice(2), '--nproc').args, '--threads').args;
  return launch({
    nproc: o.nproc!,
    script: raw[1]!,
    args,
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
  });
}

/** Runs a training or an evolution; resolves with the exit code. */
async function runTrainCommand(o: TrainCliOptions, raw: string[]): Promise<number> {
  const evolving = o.evolve !== undefined || o.resumeEvolve !== undefined;
  if (o.nproc !== undefined && o.nproc > 1) return launchRanks(o, raw, evolving);
  // Ranks other than 0 print only warnings and errors: rank 0 tells the run.
  const quiet = (distributedFromEnv()?.rank ?? 0) > 0;
  const out = (s: string) => {
    if (!quiet || s.startsWith('WARNING')) process.stdout.write(`${s}\n`);
  };
  if (evolving && o.resume !== undefined) {
    throw new Yolo5Error(
      'E_ARG',
      '--resume does not combine with --evolve: continue an evolution with --resume-evolve DIR',
    );
  }
  const opts = toTrainOptions(o, out);
  const interrupt = interruptOnSignals(out);
  opts.signal = interrupt.signal;
  const progress = progressPrinter(out);
  try {
    if (evolving) {
      const run = evolve({
        ...opts,
        ...(o.evolve !== undefined ? { generations: o.evolve } : {}),
        ...(o.evolveParent !== undefined ? { parent: o.evolveParent } : {}),
        ...(o.resumeEvolve !== undefined ? { resumeEvolve: o.resumeEvolve } : {}),
      });
      run.on('batch', progress.onBatch);
      run.on('generation', progress.reset);
      const r = await run;
      return r.status === 'aborted' ? (interrupt.exitCode() ?? EXIT.failure) : EXIT.ok;
    }
    const run = train(opts);
    if (!quiet) run.on('batch', progress.onBatch);
    if (!quiet && progress.printer.tty) run.on('valBatch', valProgress(progress.printer));
    const result = await run;
    out(summary(result));
    if (result.status === 'aborted') return interrupt.exitCode() ?? EXIT.failure;
    return result.status === 'non-finite-loss' ? EXIT.failure : EXIT.ok;
  } catch (e) {
    // Interrupted before anything was trained: say so in one line, exit as interrupted.
    const code = interrupt.exitCode();
    if (e instanceof Yolo5Error && e.code === 'E_ABORTED' && code !== undefined) {
      process.stderr.write(`yolo5: ${e.message}\n`);
      return code;
    }
    throw e;
  } finally {
    interrupt.dispose();
  }
}

export function trainCommand(): Command {
  const c = new Command('train').description(
    'train (or fine-tune with frozen layers); without --data: fine-tune the bundled model on the built-in shapes set',
  );
  return addRunFlags(addTrainingFlags(c)).action(async (o: TrainCliOptions) => {
    // --nproc runs this process's own command line again, once per rank.
    process.exitCode = await runTrainCommand(o, process.argv);
  });
}

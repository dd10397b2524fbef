/**
 * `yolo5 train`: the reference's flags; progress per epoch; runs/train/exp* with weights and
 * results.csv. `--evolve [N]` runs hyperparameter evolution (runs/evolve/exp*) with the same flags.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { Yolo5Error } from '../errors';
import { evolve } from '../train/evolve';
import { train, type BatchEvent, type TrainOptions } from '../train/train';
import { freezeSpecFromArgs, parseInteger, parseNumber } from './options';

interface TrainCliOptions {
  data?: string;
  cfg?: string;
  weights?: string;
  hyp?: string;
  epochs: number;
  batchSize: number;
  imgsz?: number;
  rect?: boolean;
  multiScale?: boolean;
  imageWeights?: boolean;
  resume?: boolean | string;
  nosave?: boolean;
  noval?: boolean;
  noautoanchor?: boolean;
  cache?: string | boolean;
  workers?: number;
  optimizer: string;
  cosLr?: boolean;
  labelSmoothing: number;
  patience: number;
  freeze?: string[];
  freezeBn?: boolean;
  seed: number;
  singleCls?: boolean;
  closeMosaic: number;
  project?: string;
  name?: string;
  existOk?: boolean;
  threads?: number;
  device?: string;
  evolve?: number;
  evolveParent: string;
  resumeEvolve?: string;
}

function bar(done: number, total: number, width = 20): string {
  const n = Math.round((done / Math.max(total, 1)) * width);
  return `${'█'.repeat(n)}${' '.repeat(width - n)}`;
}

function memGB(): string {
  return `${(process.memoryUsage().rss / 1e9).toFixed(2)}G`;
}

export function trainCommand(): Command {
  return new Command('train')
    .description(
      'train (or fine-tune with frozen layers); without --data: fine-tune the bundled model on the built-in shapes set',
    )
    .option('--data <yaml>', 'data set yaml (default: the built-in target set shapes-b)')
    .option(
      '--cfg <yaml>',
      'model yaml or bundled name (default yolov5s; yolov5n from scratch on the built-in data)',
    )
    .option(
      '--weights <file>',
      "initial weights (.pt from Python YOLOv5, a state dict, or ours; '' for none; default without --data and --cfg: the bundled models/yolov5n-shapes.pt)",
    )
    .option('--hyp <yaml>', 'hyperparameters (default models/hyps/hyp.scratch-low.yaml)')
    .option('--epochs <n>', 'epochs', parseInteger('--epochs', 1), 100)
    .option('--batch-size, --batch <n>', 'batch size', parseInteger('--batch-size', 1), 16)
    .option(
      '--img, --imgsz <n>',
      'train and val image size in pixels (default 640; 256 on the built-in data)',
      parseInteger('--img', 32),
    )
    .option('--rect', 'rectangular batches (no mosaic)')
    .option('--multi-scale', 'vary the image size ±50% per batch')
    .option('--image-weights', 'sample images favouring poorly detected classes')
    .option('--resume [last.pt]', 'resume the newest run, or the given last.pt')
    .option('--nosave', 'only save the final checkpoint')
    .option('--noval', 'only validate the final epoch')
    .option('--noautoanchor', 'skip the anchor check')
    .option('--cache [ram]', 'keep decoded images in memory')
    .option('--workers <n>', 'data loader threads', parseInteger('--workers', 0))
    .option('--optimizer <name>', 'SGD, Adam or AdamW', 'SGD')
    .option('--cos-lr', 'cosine learning-rate schedule')
    .option(
      '--label-smoothing <eps>',
      'label smoothing',
      parseNumber('--label-smoothing', 0, 0.99),
      0,
    )
    .option(
      '--patience <n>',
      'early stop after N epochs without improvement',
      parseInteger('--patience', 0),
      100,
    )
    .option(
      '--freeze <n...>',
      'freeze the first N layers, the listed layers, or name prefixes/globs',
    )
    .option('--freeze-bn', "also hold frozen layers' BatchNorm statistics")
    .option('--seed <n>', 'random seed', parseInteger('--seed', 0), 0)
    .option('--single-cls', 'train as a single class')
    .option(
      '--close-mosaic <n>',
      'turn mosaic off for the last N epochs',
      parseInteger('--close-mosaic', 0),
      0,
    )
    .option('--threads <n>', 'LibTorch threads (default: all cores)', parseInteger('--threads', 1))
    .option('--device <d>', 'cpu (default), a CUDA device index such as 0, or cuda:N')
    .option('--project <dir>', 'runs folder (default runs/train; runs/evolve with --evolve)')
    .option('--name <name>', 'run name (default exp)')
    .option('--exist-ok', 'reuse an existing run folder')
    .addOption(
      new Option(
        '--evolve [generations]',
        'evolve hyperparameters: N generations of one short training each',
      )
        .argParser(parseInteger('--evolve', 1))
        .preset('300'),
    )
    .addOption(
      new Option(
        '--evolve-parent <mode>',
        'evolution parent: single (one of the best, by fitness) or weighted (their mean)',
      )
        .choices(['single', 'weighted'])
        .default('single'),
    )
    .option(
      '--resume-evolve <dir>',
      'continue the evolution in this folder (with --evolve N: up to N generations in total)',
    )
    .action(async (o: TrainCliOptions) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      if (!['SGD', 'Adam', 'AdamW'].includes(o.optimizer)) {
        throw new InvalidArgumentError(
          `Expected SGD, Adam or AdamW for --optimizer but received ${JSON.stringify(o.optimizer)}`,
        );
      }
      if (o.cache !== undefined && o.cache !== true && o.cache !== 'ram') {
        throw new InvalidArgumentError(
          `Expected ram for --cache but received ${JSON.stringify(o.cache)} (disk caching is not supported)`,
        );
      }
      const evolving = o.evolve !== undefined || o.resumeEvolve !== undefined;
      if (evolving && o.resume !== undefined) {
        throw new Yolo5Error(
          'E_ARG',
          '--resume does not combine with --evolve: continue an evolution with --resume-evolve DIR',
        );
      }
      const freeze = freezeSpecFromArgs(o.freeze);
      const opts: TrainOptions = {
        ...(o.data !== undefined ? { data: o.data } : {}),
        ...(o.cfg !== undefined ? { cfg: o.cfg } : {}),
        ...(o.weights !== undefined ? { weights: o.weights } : {}),
        ...(o.hyp !== undefined ? { hyp: o.hyp } : {}),
        ...(o.resume !== undefined ? { resume: o.resume } : {}),
        ...(freeze !== undefined ? { freeze } : {}),
        ...(o.workers !== undefined ? { workers: o.workers } : {}),
        ...(o.threads !== undefined ? { threads: o.threads } : {}),
        ...(o.device !== undefined ? { device: o.device } : {}),
        epochs: o.epochs,
        batch: o.batchSize,
        ...(o.imgsz !== undefined ? { imgsz: o.imgsz } : {}),
        rect: o.rect === true,
        multiScale: o.multiScale === true,
        imageWeights: o.imageWeights === true,
        nosave: o.nosave === true,
        noval: o.noval === true,
        noautoanchor: o.noautoanchor === true,
        cache: o.cache !== undefined,
        optimizer: o.optimizer as 'SGD',
        cosLr: o.cosLr === true,
        labelSmoothing: o.labelSmoothing,
        patience: o.patience,
        freezeBn: o.freezeBn === true,
        seed: o.seed,
        singleCls: o.singleCls === true,
        closeMosaic: o.closeMosaic,
        ...(o.project !== undefined ? { project: o.project } : {}),
        ...(o.name !== undefined ? { name: o.name } : {}),
        existOk: o.existOk === true,
        log: out,
      };
      const controller = new AbortController();
      const onSigint = () => {
        out('\nStopping after this batch (Ctrl-C again to quit now)...');
        controller.abort();
        process.once('SIGINT', () => process.exit(130));
      };
      process.once('SIGINT', onSigint);
      opts.signal = controller.signal;
      const tty = process.stdout.isTTY === true;
      let header = false;
      const line = (p: BatchEvent) =>
        `${`${p.epoch}/${p.epochs - 1}`.padStart(11)}${memGB().padStart(11)}${p.lbox.toFixed(4).padStart(11)}${p.lobj.toFixed(4).padStart(11)}${p.lcls
          .toFixed(4)
          .padStart(
            11,
          )}${String(p.instances).padStart(11)}${String(p.size).padStart(11)}: ${bar(p.batch + 1, p.batches)} ${p.batch + 1}/${p.batches} ` +
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
        if (tty) process.stdout.write(`\r${line(p)}`);
        else if (p.batch === p.batches - 1) out(line(p));
        if (tty && p.batch === p.batches - 1) process.stdout.write('\n');
      };
      if (evolving) {
        const run = evolve({
          ...opts,
          ...(o.evolve !== undefined ? { generations: o.evolve } : {}),
          parent: o.evolveParent as 'single',
          ...(o.resumeEvolve !== undefined ? { resumeEvolve: o.resumeEvolve } : {}),
        });
        run.on('batch', onBatch);
        run.on('generation', () => {
          header = false;
        });
        await run;
        process.removeListener('SIGINT', onSigint);
        return;
      }
      const run = train(opts);
      run.on('batch', onBatch);
      const result = await run;
      process.removeListener('SIGINT', onSigint);
      out(
        `Training ${result.status}: best fitness ${result.bestFitness.toFixed(4)}, weights in ${result.saveDir}/weights`,
      );
      if (result.status === 'non-finite-loss') process.exitCode = 1;
    });
}

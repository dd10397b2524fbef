#!/usr/bin/env node
/** The `yolo5` command: each subcommand is its own file calling the public API. */
import { Command, CommanderError } from 'commander';
import { Yolo5Error } from '../errors';
import { version } from '../native/runtime';
import { buildCommand } from './build';
import { detectCommand } from './detect';
import { doctorCommand } from './doctor';
import { exportCommand } from './export';
import { inspectCommand } from './inspect';
import { paramsCommand } from './params';
import { pruneCommand } from './prune';
import { trainCommand } from './train';
import { valCommand } from './val';

export function buildProgram(): Command {
  const program = new Command('yolo5')
    .description('YOLOv5 training, validation and detection on LibTorch')
    .version(version, '-v, --version')
    .showHelpAfterError();
  program.addCommand(trainCommand());
  program.addCommand(paramsCommand());
  program.addCommand(detectCommand());
  program.addCommand(valCommand());
  program.addCommand(exportCommand());
  program.addCommand(inspectCommand());
  program.addCommand(pruneCommand());
  program.addCommand(doctorCommand());
  program.addCommand(buildCommand());
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof Yolo5Error) {
      process.stderr.write(`yolo5: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

if (require.main === module) {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`yolo5: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

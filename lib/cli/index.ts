#!/usr/bin/env node
/** The `yolo5` command: each subcommand is its own file calling the public API. */
import { Command, CommanderError } from 'commander';
import { Yolo5Error } from '../errors';
import { preferSpinningThreads } from '../native/addon';
import { version } from '../native/runtime';
import { EXIT, oneLine, systemErrorLine } from './exit';
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
    .version(version, '-v, --version');
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

/**
 * Runs the CLI; resolves with the exit code (lib/cli/exit.ts): every error the user can cause is
 * one line on stderr, `yolo5: <message>`.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Commander reports its own parse errors through outputError; errors thrown in an action
  // (an InvalidArgumentError from a check there) reach the catch below unreported.
  let reported = false;
  const output = {
    outputError: (text: string, write: (s: string) => void) => {
      reported = true;
      write(`yolo5: ${oneLine(text)}\n`);
    },
  };
  for (const c of [program, ...program.commands]) c.exitOverride().configureOutput(output);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return EXIT.ok; // --help, --version
      // Help shown for a missing command is its own report.
      const shown = reported || e.code === 'commander.help' || e.code === 'commander.helpDisplayed';
      if (!shown) process.stderr.write(`yolo5: ${oneLine(e.message)}\n`);
      return EXIT.usage;
    }
    if (e instanceof Yolo5Error) {
      process.stderr.write(`yolo5: ${oneLine(e.message)}\n`);
      return EXIT.failure;
    }
    const line = systemErrorLine(e);
    if (line !== undefined) {
      process.stderr.write(`yolo5: ${oneLine(line)}\n`);
      return EXIT.failure;
    }
    throw e;
  }
}

if (require.main === module) {
  // The command is the whole process: OpenMP threads may spin between parallel regions.
  preferSpinningThreads();
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      // Not a Yolo5Error: a bug, so the stack goes with it.
      process.stderr.write(
        `yolo5: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
      );
      process.exitCode = EXIT.failure;
    },
  );
}

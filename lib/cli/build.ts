/** `yolo5 build`: build the native addon from source (for installs that skipped install scripts). */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Command } from 'commander';
import { packageRoot } from '../native/paths';

export function buildCommand(): Command {
  return new Command('build')
    .description(
      'build the native addon from source with cmake-js (needs LibTorch, CMake, a C++17 compiler, the stb headers)',
    )
    .action(() => {
      // The install step's build: the same messages, and an installed copy keeps only the addon.
      const root = packageRoot();
      const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'install.js'), '--build'], {
        cwd: root,
        stdio: 'inherit',
      });
      process.exitCode = r.status ?? 1;
    });
}

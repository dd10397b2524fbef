/** `yolo5 build`: build the native addon from source (for installs that skipped install scripts). */
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { packageRoot } from '../native/paths';

export function buildCommand(): Command {
  return new Command('build')
    .description(
      'build the native addon from source with cmake-js (needs LibTorch, CMake, a C++17 compiler)',
    )
    .action(() => {
      const root = packageRoot();
      const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
      const r = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });
}

/** `yolo5 doctor`: what this install runs on — addon, LibTorch, CUDA, threads, JPEG decoder. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { native } from '../native';
import { packageRoot } from '../paths';
import { version } from '../runtime';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('print what yolo5 found: addon, LibTorch, CUDA devices, threads, JPEG decoder')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      const root = packageRoot();
      const addon = native();
      const candidates = [
        path.join(root, 'build', 'Release', 'yolo5.node'),
        ...(fs.existsSync(path.join(root, 'prebuilds', `${process.platform}-${process.arch}`))
          ? fs
              .readdirSync(path.join(root, 'prebuilds', `${process.platform}-${process.arch}`))
              .filter((f) => f.endsWith('.node'))
              .map((f) => path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, f))
          : []),
      ].filter((f) => fs.existsSync(f));
      const cuda = addon.cudaInfo();
      const info = {
        yolo5: version,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        addon: candidates,
        libtorch: addon.libtorchVersion,
        cuda,
        threads: addon.getThreads(),
        jpeg: addon.jpegLibrary() || 'built-in decoder (stb_image)',
      };
      if (o.json) {
        out(JSON.stringify(info, null, 2));
        return;
      }
      out(`yolo5 ${info.yolo5} on node ${info.node} (${info.platform})`);
      out(`addon: ${candidates.join(', ') || '(loaded by node-gyp-build)'}`);
      out(`LibTorch: ${info.libtorch}`);
      out(
        `CUDA: ${cuda.available ? `available, ${cuda.deviceCount} device(s)` : 'not available (CPU only)'}`,
      );
      out(`threads: ${info.threads} (set YOLO5_THREADS to change)`);
      out(`JPEG: ${info.jpeg}`);
    });
}

/** `yolo5 doctor`: what this install runs on — addon, LibTorch, CUDA, threads, JPEG decoder. */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Command } from 'commander';
import { addonOrigin, native } from '../native/addon';
import { version } from '../native/runtime';

/** GPU names from the NVIDIA driver's tool (LibTorch's C++ API has no device names without CUDA headers). */
function gpuNames(): string[] {
  const r = spawnSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return r.status === 0
    ? r.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
    : [];
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('print what yolo5 found: addon, LibTorch, CUDA devices, threads, JPEG decoder')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      const addon = native();
      const origin = addonOrigin();
      const build = addon.buildInfo();
      const cuda = addon.cudaInfo();
      const libtorchFile = build.libtorchFile ?? '';
      const info = {
        yolo5: version,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        addon: { file: origin?.file ?? '', kind: origin?.kind ?? '', notes: origin?.notes ?? [] },
        libtorch: {
          version: addon.libtorchVersion,
          file: libtorchFile,
          dir: libtorchFile ? path.dirname(libtorchFile) : '',
          // How it was found: a prebuilt binary's LibTorch is chosen at load; a source build's is linked.
          source:
            origin?.libtorch?.source ??
            (origin?.kind === 'source build' ? 'linked at build time' : 'dynamic linker'),
          preloaded: origin?.preload ?? [],
          prebuiltFor: origin?.manifest?.libtorch,
        },
        cuda: { ...cuda, linked: build.cudaLinked, devices: cuda.available ? gpuNames() : [] },
        threads: addon.getThreads(),
        jpeg: addon.jpegLibrary() || 'built-in decoder (stb_image)',
      };
      if (o.json) {
        out(JSON.stringify(info, null, 2));
        return;
      }
      out(`yolo5 ${info.yolo5} on node ${info.node} (${info.platform})`);
      out(`addon: ${info.addon.file} (${info.addon.kind})`);
      for (const n of info.addon.notes) out(`  note: ${n}`);
      out(
        `LibTorch: ${info.libtorch.version} at ${info.libtorch.dir || '(unknown)'} (${info.libtorch.source}` +
          `${info.libtorch.prebuiltFor ? `; the prebuilt binary needs ${info.libtorch.prebuiltFor}` : ''})`,
      );
      out(
        `CUDA: ${
          cuda.available
            ? `available, ${cuda.deviceCount} device(s)${info.cuda.devices.length ? `: ${info.cuda.devices.join(', ')}` : ''}`
            : `not available (CPU only${build.cudaLinked ? '; the CUDA LibTorch is linked but finds no device' : ''})`
        }`,
      );
      out(`threads: ${info.threads} (set YOLO5_THREADS to change)`);
      out(`JPEG: ${info.jpeg}`);
    });
}

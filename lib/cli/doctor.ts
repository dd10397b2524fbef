/** `yolo5 doctor`: what this install runs on — addon, LibTorch, CUDA, threads, JPEG decoder. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { BUILD_PACKAGES, addonOrigin, native } from '../native/addon';
import { currentEnvironment, findLibTorch, type PrebuildManifest } from '../native/libtorch';
import { packageRoot } from '../native/paths';
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

/**
 * Doctor without a loadable addon: which binaries are there, which LibTorch was found, and what
 * to install. Printed before the load error itself (which ends the command with status 1).
 */
export function diagnoseMissingAddon(error: unknown, root: string = packageRoot()) {
  const tuple = `${process.platform}-${process.arch}`;
  const source = path.join(root, 'build', 'Release', 'yolo5.node');
  const manifestFile = path.join(root, 'prebuilds', tuple, 'yolo5.json');
  let manifest: PrebuildManifest | undefined;
  try {
    manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as PrebuildManifest;
  } catch {
    manifest = undefined;
  }
  const torch = findLibTorch(currentEnvironment(root));
  const fix: string[] = [];
  if (manifest) {
    const want = manifest.libtorch.split('.').slice(0, 2).join('.');
    fix.push(
      `the prebuilt binary needs LibTorch ${want} (${manifest.cuda ? 'CUDA' : 'CPU'}): Debian/Ubuntu ` +
        `\`sudo apt-get install libtorch-dev\` where it is ${want}, else LIBTORCH=/path/to/an unpacked LibTorch ${want}`,
    );
  }
  fix.push(
    `or build for the LibTorch you have: \`npx yolo5 build\` (Debian/Ubuntu packages: ${BUILD_PACKAGES})`,
  );
  return {
    yolo5: version,
    node: process.version,
    platform: tuple,
    addon: {
      loadable: false,
      error: error instanceof Error ? error.message : String(error),
      sourceBuild: { file: source, present: fs.existsSync(source) },
      prebuilt: {
        file: path.join(path.dirname(manifestFile), manifest?.file ?? 'yolo5.napi.node'),
        present: manifest !== undefined,
        libtorch: manifest?.libtorch,
        cuda: manifest?.cuda,
      },
    },
    libtorch: {
      found: torch.found.map((l) => ({
        version: l.version ?? 'unknown',
        dir: l.libDir,
        source: l.source,
      })),
      tried: torch.tried,
    },
    fix,
  };
}

function printDiagnosis(d: ReturnType<typeof diagnoseMissingAddon>, out: (s: string) => void) {
  out(`yolo5 ${d.yolo5} on node ${d.node} (${d.platform})`);
  out('addon: none loads');
  const { sourceBuild: sb, prebuilt: pb } = d.addon;
  out(`  source build: ${sb.file} (${sb.present ? 'present' : 'missing'})`);
  out(
    `  prebuilt binary: ${pb.file} (${pb.present ? `present, built for LibTorch ${pb.libtorch} ${pb.cuda ? 'CUDA' : 'CPU'}` : 'missing'})`,
  );
  out(
    d.libtorch.found.length > 0
      ? `LibTorch found: ${d.libtorch.found.map((l) => `${l.version} at ${l.dir} (${l.source})`).join('; ')}`
      : `LibTorch: none found (tried ${d.libtorch.tried.join(', ')})`,
  );
  out('To fix:');
  for (const f of d.fix) out(`  - ${f}`);
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('print what yolo5 found: addon, LibTorch, CUDA devices, threads, JPEG decoder')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      const out = (s: string) => process.stdout.write(`${s}\n`);
      let addon: ReturnType<typeof native>;
      try {
        addon = native();
      } catch (e) {
        const d = diagnoseMissingAddon(e);
        if (o.json) out(JSON.stringify(d, null, 2));
        else printDiagnosis(d, out);
        throw e;
      }
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

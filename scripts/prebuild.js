#!/usr/bin/env node
// Builds the addon and places it where node-gyp-build looks for prebuilt binaries:
// prebuilds/<platform>-<arch>/yolo5.napi.node (a CUDA build: prebuilds/<platform>-<arch>-cuda/),
// with the preload helper in preload/ and yolo5.json beside it recording the LibTorch it was built
// against (version, CUDA, C++ ABI, the torch libraries it needs).
// Usage: node scripts/prebuild.js [--no-build]
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
if (!process.argv.includes('--no-build')) {
  const r = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const built = path.join(root, 'build', 'Release', 'yolo5.node');
const helper = path.join(root, 'build', 'Release', 'preload', 'yolo5_preload.node');
if (!fs.existsSync(built)) {
  console.error(`prebuild: ${built} is missing: build first`);
  process.exit(1);
}
// Ask the binary itself (in a child: a bad build must not take this process down).
const probe = spawnSync(
  process.execPath,
  ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(built)}).buildInfo()))`],
  {
    encoding: 'utf8',
  },
);
if (probe.status !== 0) {
  console.error(`prebuild: the built binary does not load:\n${probe.stderr}`);
  process.exit(1);
}
const info = JSON.parse(probe.stdout);
// CUDA builds go to their own folder: node-gyp-build never picks `<platform>-<arch>-cuda`; the
// loader (lib/native/libtorch.ts) chooses it only where an NVIDIA driver and a CUDA LibTorch are found.
const tuple = `${process.platform}-${process.arch}${info.cudaLinked ? '-cuda' : ''}`;
const dir = path.join(root, 'prebuilds', tuple);
fs.mkdirSync(path.join(dir, 'preload'), { recursive: true });
const target = path.join(dir, 'yolo5.napi.node');
fs.copyFileSync(built, target);
if (fs.existsSync(helper)) fs.copyFileSync(helper, path.join(dir, 'preload', 'yolo5_preload.node'));
// The torch libraries the binary needs by name (the loader preloads exactly these from the
// LibTorch it chooses), and a CUDA LibTorch must be linked for real (--no-as-needed).
const cache = path.join(root, 'build', 'CMakeCache.txt');
const torchDir = fs.existsSync(cache)
  ? (/^Torch_DIR:PATH=(.*)$/m.exec(fs.readFileSync(cache, 'utf8')) || [])[1]
  : undefined;
let needed;
let libtorchBuild;
if (process.platform === 'linux') {
  const elf = spawnSync('readelf', ['-d', target], { encoding: 'utf8' });
  if (elf.status === 0) {
    needed = [...elf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)]
      .map((m) => m[1])
      .filter((n) => /^lib(c10|torch_cpu|torch|c10_cuda|torch_cuda)\.so/.test(n));
  }
  if (torchDir) {
    const prefix = path.resolve(torchDir, '..', '..', '..');
    const hasCuda = fs.existsSync(path.join(prefix, 'lib', 'libtorch_cuda.so'));
    if (hasCuda && !(needed || []).some((n) => n.startsWith('libtorch_cuda.'))) {
      console.error(
        'prebuild: LibTorch has CUDA but the binary does not list libtorch_cuda.so as NEEDED',
      );
      process.exit(1);
    }
    // Unpacked LibTorch archives name their build ("2.1.0+cu121").
    const bv = path.join(prefix, 'build-version');
    if (fs.existsSync(bv)) libtorchBuild = fs.readFileSync(bv, 'utf8').trim();
  }
}
const manifest = {
  file: 'yolo5.napi.node',
  platform: process.platform,
  arch: process.arch,
  napi: info.napi,
  libtorch: info.libtorch,
  libtorchBuild,
  cuda: info.cudaLinked,
  cxx11abi: info.cxx11abi ?? null,
  needed,
  built: new Date().toISOString(),
  node: process.version,
};
fs.writeFileSync(path.join(dir, 'yolo5.json'), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(
  `prebuild: ${path.relative(root, target)} (LibTorch ${manifest.libtorch}, ${manifest.cuda ? 'CUDA' : 'CPU'}, cxx11abi ${manifest.cxx11abi}, needs ${(needed || []).join(' ')})`,
);

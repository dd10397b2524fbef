#!/usr/bin/env node
// Builds the addon and places it where node-gyp-build looks for prebuilt binaries:
// prebuilds/<platform>-<arch>/yolo5.napi.node, with yolo5.json beside it recording the LibTorch
// it was built against (version, CUDA, C++ ABI). Usage: node scripts/prebuild.js [--no-build]
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
if (!fs.existsSync(built)) {
  console.error(`prebuild: ${built} is missing: build first`);
  process.exit(1);
}
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const target = path.join(dir, 'yolo5.napi.node');
fs.copyFileSync(built, target);
// Ask the binary itself (in a child: a bad build must not take this process down).
const probe = spawnSync(
  process.execPath,
  ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(target)}).buildInfo()))`],
  {
    encoding: 'utf8',
  },
);
if (probe.status !== 0) {
  console.error(`prebuild: the built binary does not load:\n${probe.stderr}`);
  process.exit(1);
}
const info = JSON.parse(probe.stdout);
// A CUDA LibTorch must be linked for real (--no-as-needed), or CUDA never registers at run time.
const cache = path.join(root, 'build', 'CMakeCache.txt');
const torchDir = fs.existsSync(cache)
  ? (/^Torch_DIR:PATH=(.*)$/m.exec(fs.readFileSync(cache, 'utf8')) || [])[1]
  : undefined;
if (torchDir && process.platform === 'linux') {
  const libDir = path.resolve(torchDir, '..', '..', '..', 'lib');
  const hasCuda = fs.existsSync(path.join(libDir, 'libtorch_cuda.so'));
  if (hasCuda) {
    const elf = spawnSync('readelf', ['-d', target], { encoding: 'utf8' });
    if (!/NEEDED.*libtorch_cuda\.so/.test(elf.stdout)) {
      console.error(
        'prebuild: LibTorch has CUDA but the binary does not list libtorch_cuda.so as NEEDED',
      );
      process.exit(1);
    }
  }
}
const manifest = {
  file: 'yolo5.napi.node',
  platform: process.platform,
  arch: process.arch,
  napi: info.napi,
  libtorch: info.libtorch,
  cuda: info.cudaLinked,
  cxx11abi: info.cxx11abi ?? null,
  built: new Date().toISOString(),
  node: process.version,
};
fs.writeFileSync(path.join(dir, 'yolo5.json'), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(
  `prebuild: ${path.relative(root, target)} (LibTorch ${manifest.libtorch}, ${manifest.cuda ? 'CUDA' : 'CPU'}, cxx11abi ${manifest.cxx11abi})`,
);

#!/usr/bin/env node
// The package's install step: use a prebuilt binary when one loads here, else build from source
// with cmake-js. It never fails `npm install`: on failure it prints what is missing and how to fix
// it and exits 0 — loading the library then throws the same help.
//   YOLO5_SKIP_INSTALL=1           do nothing
//   YOLO5_BUILD_FROM_SOURCE=1 or npm's --build-from-source   skip the prebuilt binary
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const log = (s) => console.log(`yolo5: ${s}`);

function main() {
  if (process.env.YOLO5_SKIP_INSTALL === '1') {
    log('install step skipped (YOLO5_SKIP_INSTALL=1); run `npx yolo5 build` to build later');
    return;
  }
  const fromSource =
    process.env.YOLO5_BUILD_FROM_SOURCE === '1' ||
    process.env.npm_config_build_from_source === 'true';
  if (!fromSource) {
    // Test-load in a child process, through the package's own loader where it is built (it picks
    // the CUDA build on a GPU machine, finds and checks LibTorch): a binary that does not fit
    // (wrong LibTorch, bad CUDA library) must not crash this one.
    const loader = path.join(root, 'dist', 'native', 'addon.js');
    const code = fs.existsSync(loader)
      ? `const n = require(${JSON.stringify(loader)}); const a = n.native(); const o = n.addonOrigin();` +
        ' process.stdout.write(JSON.stringify({ ...a.buildInfo(), kind: o.kind, source: o.libtorch ? o.libtorch.source : "" }))'
      : `const a = require('node-gyp-build')(${JSON.stringify(root)}); process.stdout.write(JSON.stringify(a.buildInfo()))`;
    const probe = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', cwd: root });
    if (probe.status === 0) {
      const info = JSON.parse(probe.stdout);
      log(
        `using ${info.kind === 'source build' ? 'the existing source build' : 'a prebuilt binary'} (LibTorch ${info.libtorch}, ` +
          `${info.cudaLinked ? 'CUDA' : 'CPU'}${info.source ? `, found via ${info.source}` : ''})`,
      );
      return;
    }
    const why =
      (probe.stderr || '').split('\n').find((l) => /Error|error/.test(l)) ||
      'no prebuilt binary for this platform';
    log(`no usable prebuilt binary (${why.trim()}); building from source`);
  }
  const build = spawnSync(
    process.execPath,
    [require.resolve('cmake-js/bin/cmake-js', { paths: [root] }), 'compile'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  if (build.status === 0) {
    log('built the native addon from source');
    return;
  }
  console.error(
    [
      '',
      'yolo5: could not build the native addon.',
      '  It needs LibTorch, CMake and a C++17 compiler. LibTorch was looked for in: LIBTORCH (an unpacked',
      '  LibTorch folder), Torch_DIR, CMAKE_PREFIX_PATH, a Python torch install, and the system package.',
      '  Debian/Ubuntu: sudo apt-get install libtorch-dev cmake g++ make',
      '  Elsewhere: download LibTorch and set LIBTORCH=/path/to/libtorch',
      '  Then run: npx yolo5 build',
      '',
    ].join('\n'),
  );
}

try {
  main();
} catch (e) {
  console.error(
    `yolo5: install step failed: ${e && e.message ? e.message : e}; run \`npx yolo5 build\` later`,
  );
}
process.exitCode = 0;

#!/usr/bin/env node
// The package's install step: use a prebuilt binary when one loads here, else build from source
// with cmake-js. It never fails `npm install`: on failure it prints what is missing and how to fix
// it and exits 0 — loading the library then throws the same help.
//   YOLO5_SKIP_INSTALL=1           do nothing
//   YOLO5_BUILD_FROM_SOURCE=1 or npm's --build-from-source   skip the prebuilt binary
//   node scripts/install.js --build   build from source now (what `npx yolo5 build` runs)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
// What a source build needs (keep in step with lib/native/addon.ts, CMakeLists.txt, setup.sh).
const BUILD_PACKAGES = 'libtorch-dev cmake g++ make libstb-dev';
// An installed copy (not a checkout, whose build folder is a developer's incremental build).
const installed = /[\\/]node_modules[\\/]/.test(root);

/**
 * npm (7 and later) runs install scripts in the background, output piped, and shows it only when
 * the script fails; the terminal itself (/dev/tty) still reaches the user, so say what matters there.
 */
function tell(lines) {
  const text = `${lines.map((l) => `yolo5: ${l}`).join('\n')}\n`;
  process.stdout.write(text);
  if (process.stdout.isTTY) return; // --foreground-scripts, or run by hand: already on screen
  try {
    const fd = fs.openSync('/dev/tty', 'w');
    fs.writeSync(fd, text);
    fs.closeSync(fd);
  } catch {
    // no terminal (CI, a container): the npm log has it
  }
}

/** Test-loads the prebuilt binary in a child process: what it runs on, or why it does not load. */
function probe() {
  // Through the package's own loader where it is built (it picks the CUDA build on a GPU machine,
  // finds and checks LibTorch): a binary that does not fit must not crash this process.
  const loader = path.join(root, 'dist', 'native', 'addon.js');
  const load = fs.existsSync(loader)
    ? `const n = require(${JSON.stringify(loader)}); const a = n.native(); const o = n.addonOrigin();` +
      ' const info = { ...a.buildInfo(), kind: o.kind, source: o.libtorch ? o.libtorch.source : "" };'
    : `const a = require('node-gyp-build')(${JSON.stringify(root)}); const info = a.buildInfo();`;
  // The reason is the error's first line, never Node's source excerpt of where it was thrown.
  const code =
    `try { ${load} process.stdout.write(JSON.stringify(info)); } catch (e) {` +
    ' process.stderr.write(String(e && e.message ? e.message : e).split("\\n")[0]); process.exit(1); }';
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', cwd: root });
  if (r.status === 0) return { info: JSON.parse(r.stdout) };
  const why = (r.stderr || '').trim().split('\n')[0] || `exit ${r.status}`;
  return { why };
}

/** After a build in an installed copy: only the addon and its preload helper stay (the
 * precompiled torch header alone is ~570 MB). */
function keepOnlyTheAddon() {
  const build = path.join(root, 'build');
  const keep = [
    path.join('Release', 'yolo5.node'),
    path.join('Release', 'preload', 'yolo5_preload.node'),
  ];
  const saved = keep
    .map((rel) => ({ rel, file: path.join(build, rel) }))
    .filter((k) => fs.existsSync(k.file))
    .map((k) => ({ ...k, bytes: fs.readFileSync(k.file) }));
  fs.rmSync(build, { recursive: true, force: true });
  for (const k of saved) {
    fs.mkdirSync(path.dirname(k.file), { recursive: true });
    fs.writeFileSync(k.file, k.bytes, { mode: 0o755 });
  }
}

function buildFromSource(reason) {
  tell([
    `${reason}; building the native addon from source with cmake-js.`,
    'This compiles against the LibTorch headers and takes about 5 minutes on 2 cores (up to ~15 on a',
    'slower or busy machine); `npm install --foreground-scripts` shows its progress.',
  ]);
  const started = Date.now();
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  const build = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit' });
  if (build.status === 0) {
    if (installed) keepOnlyTheAddon();
    const minutes = ((Date.now() - started) / 60000).toFixed(1);
    tell([`built the native addon from source in ${minutes} min`]);
    return true;
  }
  tell([
    'could not build the native addon. A source build needs LibTorch, CMake, a C++17 compiler and',
    '  the stb headers. LibTorch was looked for in: LIBTORCH (an unpacked LibTorch folder), Torch_DIR,',
    '  CMAKE_PREFIX_PATH, a Python torch install, and the system package.',
    `  Debian/Ubuntu: sudo apt-get install ${BUILD_PACKAGES}`,
    '  Elsewhere: download LibTorch, set LIBTORCH=/path/to/libtorch (and STB_INCLUDE_DIR for stb)',
    '  Then run: npx yolo5 build    (`npx yolo5 doctor` says what is missing)',
  ]);
  return false;
}

function main() {
  if (process.argv.includes('--build')) {
    process.exitCode = buildFromSource('building on request') ? 0 : 1;
    return;
  }
  if (process.env.YOLO5_SKIP_INSTALL === '1') {
    tell(['install step skipped (YOLO5_SKIP_INSTALL=1); run `npx yolo5 build` to build later']);
    return;
  }
  const fromSource =
    process.env.YOLO5_BUILD_FROM_SOURCE === '1' ||
    process.env.npm_config_build_from_source === 'true';
  if (fromSource) {
    buildFromSource(
      'a source build was asked for (YOLO5_BUILD_FROM_SOURCE or --build-from-source)',
    );
    return;
  }
  const p = probe();
  if (p.info) {
    const info = p.info;
    console.log(
      `yolo5: using ${info.kind === 'source build' ? 'the existing source build' : 'a prebuilt binary'} (LibTorch ${info.libtorch}, ` +
        `${info.cudaLinked ? 'CUDA' : 'CPU'}${info.source ? `, found via ${info.source}` : ''})`,
    );
    return;
  }
  buildFromSource(`no usable prebuilt binary (${p.why})`);
}

try {
  main();
} catch (e) {
  tell([`install step failed: ${e && e.message ? e.message : e}; run \`npx yolo5 build\` later`]);
}
if (!process.argv.includes('--build')) process.exitCode = 0;

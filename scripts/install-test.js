#!/usr/bin/env node
// A real install: `npm pack`, then install the tarball into fresh projects with no network beyond
// the npm cache, once using the prebuilt binary and once forcing the source build; in each, run
// the CLI (--version, doctor, detect on a fixture image), import it from ESM and CommonJS, and
// type-check `import { train } from 'yolo5'` both ways. Usage: node scripts/install-test.js [--skip-source]
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');

const root = path.join(__dirname, '..');
const fixtures = path.resolve(
  process.env.YOLO5_FIXTURES || path.join(root, '..', 'shared', 'fixtures', 'reference'),
);
const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'yolo5-install-'));
const env = {
  ...process.env,
  ONNXRUNTIME_NODE_INSTALL: 'skip',
  YOLO5_CACHE: path.join(tmp, 'cache'),
  npm_config_offline: 'true',
};
delete env.npm_config_build_from_source;

function sh(cmd, args, cwd, extra = {}) {
  const r = spawnSync(cmd, args, {
    cwd,
    env: { ...env, ...extra },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status}\n${r.stdout}\n${r.stderr}`,
    );
  }
  return r.stdout;
}

/** `npx yolo5 detect` on a fixture image through the installed package; checks what it found. */
function detectFixture(proj, project, extra = {}) {
  const weights = path.join(fixtures, 'yolov5n-shapes5.pt');
  const image = path.join(fixtures, 'shapes5', 'images', 'val', '00000.jpg');
  const args = ['--no-install', 'yolo5', 'detect', '--weights', weights, '--source', image];
  const out = sh('npx', [...args, '--img', '256', '--project', project], proj, extra);
  assert.match(out, /00000\.jpg: 256x256 1 ellipse, 1 cross/);
}

let passed = 0;
let failed = 0;
function check(name, fn) {
  const t = Date.now();
  try {
    fn();
    passed++;
    console.log(`ok - ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n${String(e && e.stack ? e.stack : e).replace(/^/gm, '  ')}`);
  }
}

sh(process.execPath, [path.join(root, 'scripts', 'prebuild.js'), '--no-build'], root);
// The consumer installs below run offline, from the npm cache alone. `npm ci` caches tarballs but
// not the registry metadata an install without a lockfile resolves ranges with, so first put
// every runtime package of our lockfile (exact versions) into the cache.
{
  const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8'));
  const specs = Object.entries(lock.packages)
    .filter(([p, v]) => p.startsWith('node_modules/') && !v.dev && v.version)
    .map(([p, v]) => `${p.slice(p.lastIndexOf('node_modules/') + 13)}@${v.version}`);
  sh('npm', ['cache', 'add', ...new Set(specs)], root, { npm_config_offline: 'false' });
}
const packed = sh('npm', ['pack', '--pack-destination', tmp, '--silent'], root)
  .trim()
  .split('\n')
  .pop();
const tarball = path.join(tmp, packed);
console.log(`packed ${tarball} (${(fs.statSync(tarball).size / 1e6).toFixed(1)} MB)`);
const tuple = `${process.platform}-${process.arch}`;
check(
  'the tarball holds the prebuilt binary, its manifest and the bundled model, and no source maps',
  () => {
    const files = sh('tar', ['tzf', tarball], tmp).split('\n').filter(Boolean);
    for (const f of [
      `package/prebuilds/${tuple}/yolo5.napi.node`,
      `package/prebuilds/${tuple}/yolo5.json`,
      `package/prebuilds/${tuple}/preload/yolo5_preload.node`,
      'package/models/yolov5n-shapes.pt',
      'package/models/yolov5n-shapes.json',
      'package/dist/index.d.ts',
    ])
      assert.ok(files.includes(f), `${f} is in the tarball`);
    assert.deepEqual(
      files.filter((f) => f.endsWith('.map')),
      [],
      'no source maps (they name lib/, which is not shipped)',
    );
    assert.deepEqual(
      files.filter((f) => f.startsWith('package/build/')),
      [],
      'no build folder',
    );
  },
);

/** Bytes under `dir` (files only, links not followed). */
function duBytes(dir) {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += duBytes(p);
    else if (e.isFile()) n += fs.statSync(p).size;
  }
  return n;
}
const MAX_INSTALLED_MB = 60;

const modes = process.argv.includes('--skip-source') ? ['prebuilt'] : ['prebuilt', 'source'];
for (const mode of modes) {
  const proj = path.join(tmp, mode);
  fs.mkdirSync(proj);
  fs.writeFileSync(
    path.join(proj, 'package.json'),
    JSON.stringify({ name: `consumer-${mode}`, version: '1.0.0', private: true }),
  );
  check(`${mode}: npm install of the tarball`, () => {
    const out = sh(
      'npm',
      ['install', '--no-audit', '--no-fund', '--foreground-scripts', tarball],
      proj,
      mode === 'source' ? { YOLO5_BUILD_FROM_SOURCE: '1' } : {},
    );
    const pkg = path.join(proj, 'node_modules', 'yolo5');
    assert.ok(fs.existsSync(path.join(pkg, 'dist', 'index.js')), 'dist shipped');
    assert.ok(
      !fs.existsSync(path.join(pkg, 'test')) && !fs.existsSync(path.join(pkg, 'lib')),
      'only what users need',
    );
    if (mode === 'source') {
      assert.match(out, /building the native addon from source.*\n.*about 5 minutes/);
      assert.match(out, /built the native addon from source/);
      // Only the addon stays: no precompiled header, objects or CMake files.
      const left = [];
      const walk = (d) =>
        fs
          .readdirSync(d, { withFileTypes: true })
          .forEach((e) =>
            e.isDirectory()
              ? walk(path.join(d, e.name))
              : left.push(path.relative(pkg, path.join(d, e.name))),
          );
      walk(path.join(pkg, 'build'));
      assert.deepEqual(left.sort(), [
        'build/Release/preload/yolo5_preload.node',
        'build/Release/yolo5.node',
      ]);
    } else {
      assert.match(out, /using a prebuilt binary/);
      assert.doesNotMatch(out, /building/);
      assert.ok(!fs.existsSync(path.join(pkg, 'build')), 'nothing compiled: no build folder');
    }
    assert.ok(fs.existsSync(path.join(pkg, 'models', 'yolov5n-shapes.pt')), 'the bundled model');
    const mb = duBytes(pkg) / 1e6;
    console.log(`# ${mode}: node_modules/yolo5 is ${mb.toFixed(1)} MB`);
    assert.ok(
      mb <= MAX_INSTALLED_MB,
      `node_modules/yolo5 is ${mb.toFixed(1)} MB (at most ${MAX_INSTALLED_MB})`,
    );
  });
  check(`${mode}: npx yolo5 --version, doctor, detect`, () => {
    assert.equal(sh('npx', ['--no-install', 'yolo5', '--version'], proj).trim(), version);
    const doctor = JSON.parse(sh('npx', ['--no-install', 'yolo5', 'doctor', '--json'], proj));
    assert.match(doctor.libtorch.version, /^\d+\.\d+/);
    assert.ok(fs.existsSync(doctor.libtorch.file), `LibTorch file ${doctor.libtorch.file}`);
    assert.equal(doctor.addon.kind, mode === 'source' ? 'source build' : 'prebuilt');
    assert.ok(
      doctor.addon.file.includes(mode === 'source' ? 'build' : 'prebuilds'),
      doctor.addon.file,
    );
    detectFixture(proj, path.join(proj, 'runs'));
  });
  check(`${mode}: ESM and CommonJS consumers load and type-check`, () => {
    const esm = sh(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { train, loadModel, Yolo5Error } from 'yolo5'; console.log(typeof train, typeof loadModel, typeof Yolo5Error)",
      ],
      proj,
    );
    assert.equal(esm.trim(), 'function function function');
    const cjs = sh(
      process.execPath,
      ['-e', "const y = require('yolo5'); console.log(typeof y.train, typeof y.detect)"],
      proj,
    );
    assert.equal(cjs.trim(), 'function function');
    fs.writeFileSync(
      path.join(proj, 'esm.mts'),
      "import { train, type TrainResult } from 'yolo5';\nconst run = train({ epochs: 1 });\nrun.then((r: TrainResult) => r.best);\n",
    );
    fs.writeFileSync(
      path.join(proj, 'cjs.cts'),
      "import yolo5 = require('yolo5');\nconst m: Promise<yolo5.Model> = yolo5.loadModel({ cfg: 'yolov5n' });\nvoid m;\n",
    );
    fs.writeFileSync(
      path.join(proj, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          types: ['node'],
          typeRoots: [path.join(root, 'node_modules', '@types')],
        },
        files: ['esm.mts', 'cjs.cts'],
      }),
    );
    sh(
      process.execPath,
      [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
      proj,
    );
  });
}

// The prebuilt binary on a LibTorch outside the linker's search path: a folder laid out like an
// unpacked LibTorch whose libraries are this machine's (hard links, else copies), named by LIBTORCH.
const manifestFile = path.join(
  tmp,
  'prebuilt',
  'node_modules',
  'yolo5',
  'prebuilds',
  `${process.platform}-${process.arch}`,
  'yolo5.json',
);
const manifest = fs.existsSync(manifestFile)
  ? JSON.parse(fs.readFileSync(manifestFile, 'utf8'))
  : undefined;
const systemDirs = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/lib',
];
const systemLib = (name) => systemDirs.map((d) => path.join(d, name)).find((f) => fs.existsSync(f));
if (manifest && manifest.needed && manifest.needed.length && manifest.needed.every(systemLib)) {
  const fakeTorch = (dir, versionHeader, link) => {
    fs.mkdirSync(path.join(dir, 'lib'), { recursive: true });
    for (const name of manifest.needed) {
      const dest = path.join(dir, 'lib', name);
      if (!link) fs.writeFileSync(dest, '');
      else {
        try {
          fs.linkSync(fs.realpathSync(systemLib(name)), dest);
        } catch {
          fs.copyFileSync(systemLib(name), dest);
        }
      }
    }
    const inc = path.join(dir, 'include', 'torch', 'csrc', 'api', 'include', 'torch');
    fs.mkdirSync(inc, { recursive: true });
    fs.writeFileSync(path.join(inc, 'version.h'), versionHeader);
  };
  const [major, minor, patch] = manifest.libtorch.split('.');
  const header = (a, b, c) =>
    `#define TORCH_VERSION_MAJOR ${a}\n#define TORCH_VERSION_MINOR ${b}\n#define TORCH_VERSION_PATCH ${c}\n`;
  check(
    'prebuilt: a LibTorch named by LIBTORCH is loaded ahead of the binary, and detect runs on it',
    () => {
      const proj = path.join(tmp, 'prebuilt');
      const lt = path.join(tmp, 'libtorch-elsewhere');
      fakeTorch(lt, header(major, minor, patch || 0), true);
      const doctor = JSON.parse(
        sh('npx', ['--no-install', 'yolo5', 'doctor', '--json'], proj, { LIBTORCH: lt }),
      );
      assert.equal(doctor.libtorch.source, 'LIBTORCH');
      assert.equal(
        doctor.libtorch.dir,
        path.join(lt, 'lib'),
        'the dynamic linker used the preloaded copy',
      );
      assert.deepEqual(
        doctor.libtorch.preloaded.map((f) => path.basename(f)).sort(),
        [...manifest.needed].sort(),
      );
      detectFixture(proj, path.join(proj, 'runs-lt'), { LIBTORCH: lt });
    },
  );
  check(
    'prebuilt: a LibTorch of another version gives one clear message, not a linker error',
    () => {
      const proj = path.join(tmp, 'prebuilt');
      const wrong = path.join(tmp, 'libtorch-wrong');
      fakeTorch(wrong, header(Number(major) + 7, 0, 1), false);
      const r = spawnSync('npx', ['--no-install', 'yolo5', 'doctor'], {
        cwd: proj,
        env: { ...env, LIBTORCH: wrong },
        encoding: 'utf8',
      });
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `needs LibTorch ${major}\\.${minor}.*LIBTORCH=.*holds LibTorch ${Number(major) + 7}\\.0\\.1`,
        ),
      );
      assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
    },
  );
} else {
  console.log(
    '# skipped the LIBTORCH checks: the manifest lists no torch libraries found in the system folders',
  );
}

check('a missing binary gives one actionable message, not a crash', () => {
  const proj = path.join(tmp, modes[0]);
  const pkg = path.join(proj, 'node_modules', 'yolo5');
  fs.renameSync(path.join(pkg, 'prebuilds'), path.join(pkg, 'prebuilds.off'));
  fs.rmSync(path.join(pkg, 'build'), { recursive: true, force: true });
  const r = spawnSync('npx', ['--no-install', 'yolo5', 'doctor'], {
    cwd: proj,
    env,
    encoding: 'utf8',
  });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /^yolo5: The native addon could not be loaded .*npx yolo5 build/m);
  assert.match(r.stderr, /libtorch-dev cmake g\+\+ make libstb-dev/);
  assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  // doctor diagnoses without an addon: what is there, which LibTorch, what to do.
  assert.match(r.stdout, /addon: none loads/);
  assert.match(r.stdout, /prebuilt binary: .*missing/);
  assert.match(r.stdout, /LibTorch found: \d+\.\d+/);
  assert.match(r.stdout, /To fix:\n  - .*npx yolo5 build.*libstb-dev/);
});

fs.rmSync(tmp, { recursive: true, force: true });
console.log(`install-test: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;

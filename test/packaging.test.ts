import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { describe, test } from 'node:test';
import { diagnoseMissingAddon } from '../lib/cli/doctor';
import { BUILD_PACKAGES } from '../lib/native/addon';
import { packageRoot } from '../lib/native/paths';
import { tempDir } from './helpers';

const root = packageRoot();
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<
  string,
  any // eslint-disable-line @typescript-eslint/no-explicit-any
>;

describe('package.json', () => {
  test('an exports map for CommonJS, ESM and types; the package links; @types/node optional', () => {
    assert.deepEqual(pkg.exports['.'], {
      types: './dist/index.d.ts',
      require: './dist/index.js',
      import: './dist/index.js',
      default: './dist/index.js',
    });
    for (const f of Object.values(pkg.exports['.']) as string[])
      assert.ok(fs.existsSync(path.join(root, f)), f);
    assert.match(pkg.repository.url, /^git\+https:\/\/.+\.git$/);
    assert.match(pkg.bugs.url, /^https:\/\//);
    assert.match(pkg.homepage, /^https:\/\//);
    assert.equal(pkg.peerDependenciesMeta['@types/node'].optional, true);
    assert.ok(pkg.peerDependencies['@types/node']);
  });

  test('the pack step builds the prebuilt binary; prebuilds and models ship, source maps do not', () => {
    assert.match(pkg.scripts.prepack, /node scripts\/prebuild\.js/);
    for (const f of ['dist', '!dist/**/*.map', 'prebuilds', 'models'])
      assert.ok(pkg.files.includes(f), f);
  });

  test('every Node the engines field allows has zlib.crc32 (v20.15 on 20.x, v22.2 on 22.x; none on 21.x)', () => {
    assert.equal(pkg.engines.node, '^20.17.0 || >=22.2.0');
    assert.equal(typeof zlib.crc32, 'function');
  });
});

describe('install help', () => {
  test('every help text lists the same system packages for a source build', () => {
    assert.equal(BUILD_PACKAGES, 'libtorch-dev cmake g++ make libstb-dev');
    const install = fs.readFileSync(path.join(root, 'scripts', 'install.js'), 'utf8');
    assert.ok(install.includes(`const BUILD_PACKAGES = '${BUILD_PACKAGES}';`));
    const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8').replace(/"\s+"/g, '');
    assert.equal(
      cmake.split(`needs: ${BUILD_PACKAGES}`).length - 1,
      2,
      'both CMake errors list them',
    );
    const setup = fs.readFileSync(path.join(root, 'scripts', 'setup.sh'), 'utf8');
    for (const p of BUILD_PACKAGES.split(' '))
      assert.match(setup, new RegExp(`need_pkg ${p.replace(/\+/g, '\\+')}(\\s|$)`, 'm'), p);
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    assert.ok(readme.includes(BUILD_PACKAGES), 'README');
  });

  test('doctor without an addon says what is there and what to install', () => {
    const dir = tempDir();
    const none = diagnoseMissingAddon(new Error('no addon'), dir);
    assert.equal(none.addon.error, 'no addon');
    assert.deepEqual([none.addon.sourceBuild.present, none.addon.prebuilt.present], [false, false]);
    assert.equal(none.fix.length, 1);
    assert.ok(none.fix[0]!.includes(BUILD_PACKAGES));
    const tuple = path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
    fs.mkdirSync(tuple, { recursive: true });
    fs.writeFileSync(
      path.join(tuple, 'yolo5.json'),
      JSON.stringify({ file: 'yolo5.napi.node', libtorch: '1.13.1', cuda: false, cxx11abi: true }),
    );
    const some = diagnoseMissingAddon(new Error('x'), dir);
    assert.equal(some.addon.prebuilt.present, true);
    assert.match(some.fix[0]!, /needs LibTorch 1\.13 \(CPU\).*LIBTORCH=/);
    assert.ok(Array.isArray(some.libtorch.tried) && some.libtorch.tried.length > 0);
  });

  test('the install step writes to the terminal, which npm does not hide', (t) => {
    // `script` gives the child a terminal; the script's stdout goes to /dev/null, so what comes
    // back is what it wrote to /dev/tty.
    if (spawnSync('script', ['--version']).status !== 0) return t.skip('no `script` here');
    const install = path.join(root, 'scripts', 'install.js');
    const r = spawnSync(
      'script',
      [
        '-qec',
        `${JSON.stringify(process.execPath)} ${JSON.stringify(install)} > /dev/null`,
        '/dev/null',
      ],
      { encoding: 'utf8', env: { ...process.env, YOLO5_SKIP_INSTALL: '1' } },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /yolo5: install step skipped \(YOLO5_SKIP_INSTALL=1\)/);
  });
});

describe('type declarations', () => {
  test("dist/*.d.ts type-check with no ambient types: they reference Node's themselves", () => {
    const dir = tempDir();
    const tsconfig = path.join(dir, 'tsconfig.json');
    fs.writeFileSync(
      tsconfig,
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          lib: ['ES2022'],
          module: 'commonjs',
          moduleResolution: 'node',
          noEmit: true,
          types: [],
          typeRoots: [path.join(root, 'node_modules', '@types')],
          baseUrl: root,
          paths: { '*': [path.join(root, 'node_modules', '*')] },
        },
        files: [path.join(root, 'dist', 'index.d.ts')],
      }),
    );
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', tsconfig], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(
      fs.readFileSync(path.join(root, 'dist', 'index.d.ts'), 'utf8'),
      /^\/\/\/ <reference types="node"/,
    );
  });
});

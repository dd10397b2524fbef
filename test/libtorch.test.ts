// Choosing the addon binary and its LibTorch (lib/native/libtorch.ts) on made-up folders: version files,
// the search order, the manifest check and its messages, the CUDA build's folder. The real load
// through the preload helper is checked by scripts/install-test.js (CI).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { chooseAddon, libtorchVersion, type LoadEnvironment } from '../lib/native/libtorch';
import { tempDir } from './helpers';

function touch(file: string, text = ''): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

const header = (a: number, b: number, c: number) =>
  `#define TORCH_VERSION_MAJOR ${a}\n#define TORCH_VERSION_MINOR ${b}\n#define TORCH_VERSION_PATCH ${c}\n` +
  `#define TORCH_VERSION \\\n  "${a}.${b}.${c}"\n`;

/** An unpacked-LibTorch-like folder: lib/ with the named libraries and a version header. */
function libtorchAt(dir: string, version: string | undefined, libs: string[]): string {
  for (const l of libs) touch(path.join(dir, 'lib', l));
  if (version) {
    const [a, b, c] = version.split('.').map(Number);
    touch(
      path.join(dir, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'),
      header(a!, b!, c!),
    );
  }
  return dir;
}

const CPU = ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'];
const CUDA = [...CPU, 'libc10_cuda.so', 'libtorch_cuda.so'];

function prebuilt(
  root: string,
  suffix: string,
  libtorch: string,
  cuda: boolean,
  needed: string[],
): void {
  const dir = path.join(root, 'prebuilds', `linux-x64${suffix}`);
  touch(path.join(dir, 'yolo5.napi.node'));
  touch(
    path.join(dir, 'yolo5.json'),
    JSON.stringify({ file: 'yolo5.napi.node', libtorch, cuda, cxx11abi: true, needed }),
  );
}

function environment(root: string, over: Partial<LoadEnvironment> = {}): LoadEnvironment {
  return {
    root,
    env: {},
    platform: 'linux',
    arch: 'x64',
    gpu: false,
    pythonTorch: () => undefined,
    systemLibDirs: [],
    ...over,
  };
}

test('LibTorch versions come from version.h, build-version, version.py or the cmake package', () => {
  const d = tempDir();
  assert.equal(libtorchVersion(d), undefined);
  touch(
    path.join(d, 'a', 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'),
    header(2, 1, 2),
  );
  assert.equal(libtorchVersion(path.join(d, 'a')), '2.1.2');
  touch(path.join(d, 'b', 'build-version'), '2.3.1+cu121\n');
  assert.equal(libtorchVersion(path.join(d, 'b')), '2.3.1');
  touch(path.join(d, 'c', 'version.py'), "__version__ = '2.0.1+cpu'\ngit_version = 'x'\n");
  assert.equal(libtorchVersion(path.join(d, 'c')), '2.0.1');
  touch(
    path.join(d, 'e', 'lib', 'cmake', 'Torch', 'TorchConfigVersion.cmake'),
    'set(PACKAGE_VERSION "1.13.0")\n',
  );
  assert.equal(libtorchVersion(path.join(d, 'e')), '1.13.0');
});

test('a source build is loaded as it is; a prebuilt one gets the system LibTorch when it fits', () => {
  const root = tempDir();
  prebuilt(root, '', '1.13.0', false, [
    'libc10.so.1.13',
    'libtorch_cpu.so.1.13',
    'libtorch.so.1.13',
  ]);
  const sys = tempDir();
  libtorchAt(path.join(sys, 'usr'), '1.13.1', [
    'libc10.so.1.13',
    'libtorch_cpu.so.1.13',
    'libtorch.so.1.13',
  ]);
  const e = environment(root, { systemLibDirs: [path.join(sys, 'usr', 'lib')] });
  const c = chooseAddon(e);
  assert.equal(c.kind, 'prebuilt');
  assert.equal(c.file, path.join(root, 'prebuilds', 'linux-x64', 'yolo5.napi.node'));
  assert.equal(c.libtorch?.source, 'system');
  assert.equal(c.libtorch?.version, '1.13.1');
  assert.deepEqual(c.preload, [], 'the dynamic linker finds a system LibTorch itself');
  touch(path.join(root, 'build', 'Release', 'yolo5.node'));
  assert.equal(chooseAddon(e).kind, 'source build');
  assert.equal(chooseAddon({ ...e, env: { PREBUILDS_ONLY: '1' } }).kind, 'prebuilt');
});

test('LIBTORCH is honoured or refused: preloads its libraries in order, or says why not', () => {
  const root = tempDir();
  prebuilt(root, '', '2.1.0', false, ['libtorch.so', 'libc10.so', 'libtorch_cpu.so']);
  const good = libtorchAt(path.join(tempDir(), 'libtorch'), '2.1.2', CPU);
  const c = chooseAddon(environment(root, { env: { LIBTORCH: good } }));
  assert.equal(c.libtorch?.source, 'LIBTORCH');
  assert.deepEqual(
    c.preload,
    ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'].map((f) => path.join(good, 'lib', f)),
  );
  const old = libtorchAt(path.join(tempDir(), 'libtorch'), '1.13.0', CPU);
  // A fitting system LibTorch does not stand in for an explicit choice that does not fit.
  const sys = libtorchAt(path.join(tempDir(), 'usr'), '2.1.0', CPU);
  assert.throws(
    () =>
      chooseAddon(
        environment(root, { env: { LIBTORCH: old }, systemLibDirs: [path.join(sys, 'lib')] }),
      ),
    /needs LibTorch 2\.1, but LIBTORCH=.* holds LibTorch 1\.13\.0 at .*npx yolo5 build/,
  );
  const empty = tempDir();
  assert.throws(
    () => chooseAddon(environment(root, { env: { LIBTORCH: empty } })),
    /LIBTORCH=.* holds no LibTorch .*needs LibTorch 2\.1/,
  );
  const torchDir = path.join(good, 'share', 'cmake', 'Torch');
  fs.mkdirSync(torchDir, { recursive: true });
  assert.equal(
    chooseAddon(environment(root, { env: { Torch_DIR: torchDir } })).libtorch?.source,
    'Torch_DIR',
  );
});

test('search order and messages: Python torch before the system, known versions first, one error', () => {
  const root = tempDir();
  prebuilt(root, '', '2.1.0', false, CPU);
  const sys = libtorchAt(path.join(tempDir(), 'usr'), '1.13.0', CPU);
  const py = path.join(tempDir(), 'site-packages', 'torch');
  for (const l of CPU) touch(path.join(py, 'lib', l));
  touch(path.join(py, 'version.py'), "__version__ = '2.1.1+cpu'\n");
  const c = chooseAddon(
    environment(root, { pythonTorch: () => py, systemLibDirs: [path.join(sys, 'lib')] }),
  );
  assert.equal(c.libtorch?.source, 'python');
  assert.equal(c.preload[0], path.join(py, 'lib', 'libc10.so'));
  // A LibTorch no file dates comes after one that is known to fit.
  const unknown = tempDir();
  for (const l of CPU) touch(path.join(unknown, 'lib', l));
  const prefix = `${unknown}${path.delimiter}`;
  const d = chooseAddon(
    environment(root, { env: { CMAKE_PREFIX_PATH: prefix }, pythonTorch: () => py }),
  );
  assert.equal(d.libtorch?.source, 'python');
  assert.throws(
    () => chooseAddon(environment(root, { systemLibDirs: [path.join(sys, 'lib')] })),
    /needs LibTorch 2\.1; found only LibTorch 1\.13\.0 at .* \(system\)\. Install that LibTorch/,
  );
  assert.throws(
    () => chooseAddon(environment(root)),
    /needs LibTorch 2\.1; none was found \(tried a Python torch \(none installed\), the system/,
  );
});

test('the CUDA build is chosen only with an NVIDIA driver and a CUDA LibTorch that fits', () => {
  const root = tempDir();
  prebuilt(root, '', '2.1.0', false, CPU);
  prebuilt(root, '-cuda', '2.1.0', true, CUDA);
  const cudaTorch = libtorchAt(path.join(tempDir(), 'libtorch-cu121'), '2.1.0', CUDA);
  const cpuTorch = libtorchAt(path.join(tempDir(), 'libtorch-cpu'), '2.1.0', CPU);
  const gpu = chooseAddon(environment(root, { gpu: true, env: { LIBTORCH: cudaTorch } }));
  assert.equal(gpu.kind, 'prebuilt (CUDA)');
  assert.equal(gpu.file, path.join(root, 'prebuilds', 'linux-x64-cuda', 'yolo5.napi.node'));
  assert.deepEqual(
    gpu.preload.map((f) => path.basename(f)),
    ['libc10.so', 'libc10_cuda.so', 'libtorch_cpu.so', 'libtorch_cuda.so', 'libtorch.so'],
  );
  const noGpu = chooseAddon(environment(root, { env: { LIBTORCH: cudaTorch } }));
  assert.equal(noGpu.kind, 'prebuilt');
  assert.match(noGpu.notes.join(), /no NVIDIA driver/);
  const cpuOnly = chooseAddon(environment(root, { gpu: true, env: { LIBTORCH: cpuTorch } }));
  assert.equal(cpuOnly.kind, 'prebuilt');
  assert.match(cpuOnly.notes.join(), /CUDA build passed over: .*needs LibTorch 2\.1 with CUDA/);
});

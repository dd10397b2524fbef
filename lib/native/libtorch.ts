/// <reference types="node" preserve="true" />
/**
 * Which addon binary to load and which LibTorch it runs on, decided before anything native loads.
 *
 * A source build (build/Release) links the LibTorch it was built against (its run path finds it).
 * A prebuilt binary records in its manifest (prebuilds/<platform>-<arch>[-cuda]/yolo5.json) the
 * LibTorch it was built against; at run time LibTorch is looked for the way the build looks for
 * it — LIBTORCH, Torch_DIR, CMAKE_PREFIX_PATH, a Python torch, the system package — its version
 * is compared with the manifest, and a LibTorch outside the dynamic linker's search path is loaded
 * first (by the small preload helper), so the binary's torch libraries resolve to it. A mismatch
 * is one clear error instead of a dynamic-linker message. CUDA builds live in their own folder
 * (node-gyp-build never picks `<platform>-<arch>-cuda`) and are chosen only on a machine with an
 * NVIDIA driver and a CUDA LibTorch of the right version.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Yolo5Error } from '../errors';

export type LibTorchSource = 'LIBTORCH' | 'Torch_DIR' | 'CMAKE_PREFIX_PATH' | 'python' | 'system';

export interface LibTorchLocation {
  source: LibTorchSource;
  /** The folder holding libtorch_cpu and friends. */
  libDir: string;
  /** Its version (x.y.z), when a version file says so. */
  version?: string;
  /** Whether its CUDA library is there. */
  cuda: boolean;
}

/** What prebuild.js records next to a prebuilt binary. */
export interface PrebuildManifest {
  file: string;
  libtorch: string;
  cuda: boolean;
  cxx11abi: boolean | null;
  /** The torch libraries the binary needs, by the names its loader looks for (sonames). */
  needed?: string[];
}

export interface AddonChoice {
  /** The .node file to load. */
  file: string;
  kind: 'source build' | 'prebuilt' | 'prebuilt (CUDA)';
  manifest?: PrebuildManifest;
  /** The LibTorch chosen for a prebuilt binary. */
  libtorch?: LibTorchLocation;
  /** Shared libraries to load globally first, in order. */
  preload: string[];
  /** Why the other candidates were passed over (for doctor and error messages). */
  notes: string[];
}

/** What the decision depends on; tests replace any of it. */
export interface LoadEnvironment {
  root: string;
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  arch: string;
  /** An NVIDIA driver is present. */
  gpu: boolean;
  /** The folder of the Python `torch` package, if one is installed. */
  pythonTorch: () => string | undefined;
  /** Folders where a system LibTorch may live (the dynamic linker searches them). */
  systemLibDirs: string[];
}

const TORCH_LIB = /^lib(c10|torch_cpu|torch|c10_cuda|torch_cuda)\.(so|dylib)(\.[0-9.]+)?$/;

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** x.y.z from the version files a LibTorch may carry; `prefix` holds lib/ (and include/, share/). */
export function libtorchVersion(
  prefix: string,
  libDir = path.join(prefix, 'lib'),
): string | undefined {
  const header = read(
    path.join(prefix, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'),
  );
  if (header) {
    const part = (k: string) =>
      new RegExp(`#define TORCH_VERSION_${k}\\s+(\\d+)`).exec(header)?.[1];
    const [a, b, c] = [part('MAJOR'), part('MINOR'), part('PATCH')];
    if (a !== undefined && b !== undefined) return `${a}.${b}.${c ?? 0}`;
  }
  // Unpacked LibTorch archives: build-version ("2.1.0+cu121"); Python: version.py.
  const build = read(path.join(prefix, 'build-version'))?.trim();
  if (build && /^\d+\.\d+/.test(build)) return build.split('+')[0];
  const py = read(path.join(prefix, 'version.py'));
  const m = py ? /__version__\s*=\s*['"](\d+\.\d+(\.\d+)?)/.exec(py) : null;
  if (m) return m[1];
  for (const cfg of [
    path.join(prefix, 'share', 'cmake', 'Torch', 'TorchConfigVersion.cmake'),
    path.join(libDir, 'cmake', 'Torch', 'TorchConfigVersion.cmake'),
  ]) {
    const v = read(cfg);
    const cm = v ? /set\(PACKAGE_VERSION "(\d+\.\d+(\.\d+)?)"\)/.exec(v) : null;
    if (cm) return cm[1];
  }
  return undefined;
}

function torchLibs(libDir: string): string[] {
  try {
    return fs.readdirSync(libDir).filter((f) => TORCH_LIB.test(f));
  } catch {
    return [];
  }
}

function locationAt(
  source: LibTorchSource,
  prefix: string,
  libDir = path.join(prefix, 'lib'),
): LibTorchLocation | undefined {
  const libs = torchLibs(libDir);
  if (!libs.some((f) => f.startsWith('libtorch_cpu.'))) return undefined;
  return {
    source,
    libDir,
    version: libtorchVersion(prefix, libDir),
    cuda: libs.some((f) => f.startsWith('libtorch_cuda.')),
  };
}

/** Every LibTorch found, in the build's order. `explicit` is the one LIBTORCH or Torch_DIR names. */
export function findLibTorch(e: LoadEnvironment): {
  found: LibTorchLocation[];
  explicit?: { source: LibTorchSource; value: string; location?: LibTorchLocation };
  tried: string[];
} {
  const found: LibTorchLocation[] = [];
  const tried: string[] = [];
  let explicit: { source: LibTorchSource; value: string; location?: LibTorchLocation };
  // An explicit choice is the only candidate, as in the build.
  if (e.env.LIBTORCH) {
    const loc = locationAt('LIBTORCH', path.resolve(e.env.LIBTORCH));
    explicit = { source: 'LIBTORCH', value: e.env.LIBTORCH, location: loc };
    return { found: loc ? [loc] : [], explicit, tried: [`LIBTORCH=${e.env.LIBTORCH}`] };
  }
  if (e.env.Torch_DIR) {
    // <prefix>/share/cmake/Torch
    const loc = locationAt('Torch_DIR', path.resolve(e.env.Torch_DIR, '..', '..', '..'));
    explicit = { source: 'Torch_DIR', value: e.env.Torch_DIR, location: loc };
    return { found: loc ? [loc] : [], explicit, tried: [`Torch_DIR=${e.env.Torch_DIR}`] };
  }
  for (const entry of (e.env.CMAKE_PREFIX_PATH ?? '').split(path.delimiter).filter(Boolean)) {
    tried.push(`CMAKE_PREFIX_PATH entry ${entry}`);
    // A prefix (lib/ inside) or a Python torch's share/cmake.
    const loc =
      locationAt('CMAKE_PREFIX_PATH', path.resolve(entry)) ??
      locationAt('CMAKE_PREFIX_PATH', path.resolve(entry, '..', '..'));
    if (loc) found.push(loc);
  }
  const torchDir = e.pythonTorch();
  tried.push(torchDir ? `Python torch at ${torchDir}` : 'a Python torch (none installed)');
  if (torchDir) {
    const loc = locationAt('python', torchDir);
    if (loc) found.push(loc);
  }
  for (const dir of e.systemLibDirs) {
    const loc = locationAt('system', path.resolve(dir, '..'), dir);
    if (loc) {
      // Debian keeps the headers and cmake files under /usr.
      loc.version ??= libtorchVersion('/usr', dir);
      found.push(loc);
    }
  }
  tried.push(`the system (${e.systemLibDirs.join(', ') || 'no library folders'})`);
  return { found, tried };
}

function majorMinor(v: string | undefined): string | undefined {
  const m = v ? /^(\d+)\.(\d+)/.exec(v) : null;
  return m ? `${m[1]}.${m[2]}` : undefined;
}

function describe(l: LibTorchLocation): string {
  return `LibTorch ${l.version ?? '(version unknown)'}${l.cuda ? ' with CUDA' : ''} at ${l.libDir} (${l.source})`;
}

function readManifest(dir: string): PrebuildManifest | undefined {
  const text = read(path.join(dir, 'yolo5.json'));
  if (!text) return undefined;
  try {
    return JSON.parse(text) as PrebuildManifest;
  } catch {
    return undefined;
  }
}

/** The libraries to load first so that `needed` resolves inside `libDir` (c10 before torch). */
function preloadList(loc: LibTorchLocation, manifest: PrebuildManifest): string[] {
  const present = torchLibs(loc.libDir);
  const wanted = manifest.needed?.length ? manifest.needed : present;
  const rank = (f: string): number =>
    ['libc10.', 'libc10_cuda.', 'libtorch_cpu.', 'libtorch_cuda.', 'libtorch.'].findIndex((p) =>
      f.startsWith(p),
    );
  return wanted
    .filter((f) => present.includes(f) && rank(f) >= 0)
    .sort((a, b) => rank(a) - rank(b))
    .map((f) => path.join(loc.libDir, f));
}

/**
 * Picks the LibTorch for a prebuilt binary, or throws one E_NATIVE error that says what the binary
 * needs, what was found, and what to do.
 */
function chooseLibTorch(
  manifest: PrebuildManifest,
  file: string,
  e: LoadEnvironment,
): { location: LibTorchLocation; preload: string[] } {
  const want = majorMinor(manifest.libtorch);
  const needsCuda = manifest.cuda;
  const fits = (l: LibTorchLocation) =>
    (l.version === undefined || majorMinor(l.version) === want) && (!needsCuda || l.cuda);
  const { found, explicit, tried } = findLibTorch(e);
  const needText = `LibTorch ${want}${needsCuda ? ' with CUDA' : ''}`;
  const fix =
    'Install that LibTorch and point LIBTORCH at it (or have a Python torch of that version), or ' +
    'build the addon for the LibTorch you have with `npx yolo5 build`.';
  if (explicit) {
    // An explicit choice is honoured or refused, never silently replaced.
    const l = explicit.location;
    if (!l)
      throw new Yolo5Error(
        'E_NATIVE',
        `${explicit.source}=${explicit.value} holds no LibTorch (no libtorch_cpu in its lib folder). ` +
          `The prebuilt binary ${file} needs ${needText}. ${fix}`,
      );
    if (!fits(l))
      throw new Yolo5Error(
        'E_NATIVE',
        `The prebuilt binary ${file} needs ${needText}, but ${explicit.source}=${explicit.value} holds ` +
          `${describe(l)}. ${fix}`,
      );
    return { location: l, preload: preloadList(l, manifest) };
  }
  // Known versions first: a LibTorch whose version no file tells is only a last resort.
  const pick = found.find((l) => l.version !== undefined && fits(l)) ?? found.find(fits);
  if (!pick) {
    throw new Yolo5Error(
      'E_NATIVE',
      `The prebuilt binary ${file} needs ${needText}; ` +
        (found.length
          ? `found only ${found.map(describe).join('; ')}. `
          : `none was found (tried ${tried.join(', ')}). `) +
        fix,
    );
  }
  // The dynamic linker finds a system LibTorch by itself.
  return { location: pick, preload: pick.source === 'system' ? [] : preloadList(pick, manifest) };
}

/** Decides which addon file to load and what to load before it. Throws a Yolo5Error when none fits. */
export function chooseAddon(e: LoadEnvironment): AddonChoice {
  const notes: string[] = [];
  const source = path.join(e.root, 'build', 'Release', 'yolo5.node');
  if (!e.env.PREBUILDS_ONLY && fs.existsSync(source)) {
    return { file: source, kind: 'source build', preload: [], notes };
  }
  const tuple = `${e.platform}-${e.arch}`;
  const cudaDir = path.join(e.root, 'prebuilds', `${tuple}-cuda`);
  const cpuDir = path.join(e.root, 'prebuilds', tuple);
  const cudaManifest = readManifest(cudaDir);
  let cudaError: Yolo5Error | undefined;
  if (cudaManifest && e.gpu) {
    const file = path.join(cudaDir, cudaManifest.file);
    try {
      const { location, preload } = chooseLibTorch(cudaManifest, file, e);
      return {
        file,
        kind: 'prebuilt (CUDA)',
        manifest: cudaManifest,
        libtorch: location,
        preload,
        notes,
      };
    } catch (err) {
      if (!(err instanceof Yolo5Error)) throw err;
      cudaError = err;
      notes.push(`CUDA build passed over: ${err.message}`);
    }
  } else if (cudaManifest) {
    notes.push('CUDA build passed over: no NVIDIA driver on this machine');
  }
  const cpuManifest = readManifest(cpuDir);
  const cpuFile = cpuManifest ? path.join(cpuDir, cpuManifest.file) : undefined;
  if (cpuManifest && cpuFile && fs.existsSync(cpuFile)) {
    try {
      const { location, preload } = chooseLibTorch(cpuManifest, cpuFile, e);
      return {
        file: cpuFile,
        kind: 'prebuilt',
        manifest: cpuManifest,
        libtorch: location,
        preload,
        notes,
      };
    } catch (err) {
      // With a GPU and a CUDA build that did not fit either, both reasons matter.
      if (cudaError && err instanceof Yolo5Error)
        throw new Yolo5Error('E_NATIVE', `${cudaError.message}\nAlso: ${err.message}`);
      throw err;
    }
  }
  if (cudaError) throw cudaError;
  // A prebuilt binary without a manifest (or none at all): let node-gyp-build decide and report.
  return { file: '', kind: 'prebuilt', preload: [], notes };
}

/** The process's view: environment, GPU, Python torch, system folders. */
export function currentEnvironment(root: string): LoadEnvironment {
  const multiarch = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' }[process.arch as string];
  return {
    root,
    env: process.env,
    platform: process.platform,
    arch: process.arch,
    gpu:
      process.platform === 'linux' &&
      (fs.existsSync('/proc/driver/nvidia/version') || fs.existsSync('/dev/nvidia0')),
    pythonTorch,
    systemLibDirs:
      process.platform === 'linux'
        ? [
            ...(multiarch ? [`/usr/lib/${multiarch}`] : []),
            '/usr/lib64',
            '/usr/lib',
            '/usr/local/lib',
          ].filter((d) => fs.existsSync(d))
        : process.platform === 'darwin'
          ? ['/usr/local/lib', '/opt/homebrew/lib'].filter((d) => fs.existsSync(d))
          : [],
  };
}

let pythonTorchDir: string | null | undefined;
/** The installed `torch` package's folder, found without importing torch (that takes seconds). */
export function pythonTorch(): string | undefined {
  if (pythonTorchDir !== undefined) return pythonTorchDir ?? undefined;
  pythonTorchDir = null;
  for (const py of ['python3', 'python']) {
    const r = spawnSync(
      py,
      [
        '-c',
        'import importlib.util as u; s = u.find_spec("torch"); ' +
          'print(s.submodule_search_locations[0] if s and s.submodule_search_locations else "")',
      ],
      { encoding: 'utf8', timeout: 10_000 },
    );
    if (r.status === 0) {
      const dir = r.stdout.trim();
      if (dir && fs.existsSync(dir)) pythonTorchDir = dir;
      break;
    }
  }
  return pythonTorchDir ?? undefined;
}

/**
 * PyTorch's zip checkpoint layout on top of the zip reader and the restricted unpickler: the
 * allow-list of globals, storages as persistent ids and tensor rebuilding.
 */
import { checkpointError } from './error';
import { latin1, numpyGlobal } from './numpy';
import {
  PyDict,
  PyGlobal,
  PyObject,
  PyOpaque,
  PySet,
  PyTuple,
  an,
  describe,
  isPyKey,
  unpickle,
} from './pickle';
import type { GlobalImpl, PyValue, UnpickleContext } from './pickle';
import { DTYPES, isHostTensor, tensorFromStorage } from './tensor';
import type { DType, HostTensor, StorageBytes } from './tensor';
import { ZipReader } from './zip';

/** `torch.<Name>Storage` → dtype; `torch.cuda.*` names come from older torch on GPU. */
const STORAGE_DTYPES: Record<string, DType> = Object.fromEntries(
  (Object.keys(DTYPES) as DType[]).map((dtype) => [DTYPES[dtype].storage, dtype]),
);

const TORCH_DTYPE_NAMES = new Set([
  'float16',
  'half',
  'bfloat16',
  'float32',
  'float',
  'float64',
  'double',
  'int64',
  'long',
  'int32',
  'int',
  'int16',
  'short',
  'int8',
  'uint8',
  'bool',
]);

/** Modules whose classes may be rebuilt as attribute bags (no behaviour, only their state). */
const MODULE_CLASS_PREFIXES = [
  'models.yolo',
  'models.common',
  'models.experimental',
  'torch.nn.modules.',
];

function isModuleClassModule(module: string): boolean {
  return MODULE_CLASS_PREFIXES.some((prefix) =>
    prefix.endsWith('.') ? module.startsWith(prefix) : module === prefix,
  );
}

/** A storage named by a persistent id: bytes of `<archive>/data/<key>` read as `dtype`. */
export class StorageRef extends PyOpaque {
  readonly pyType = 'torch storage';
  constructor(readonly storage: StorageBytes) {
    super();
  }
}

/** Own keys only: a name like `constructor` must not find Object.prototype's. */
function storageDtypeOf(module: string, name: string): DType | undefined {
  if (name === 'UntypedStorage' && (module === 'torch' || module === 'torch.storage'))
    return 'uint8';
  if (module !== 'torch' && module !== 'torch.cuda') return undefined;
  return Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, name)
    ? STORAGE_DTYPES[name]
    : undefined;
}

function storageDtype(value: PyValue): DType | undefined {
  return value instanceof PyGlobal ? storageDtypeOf(value.module, value.name) : undefined;
}

function intArg(value: PyValue | undefined, what: string, ctx: UnpickleContext): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    ctx.fail(`${what} is ${an(value)}, not an int`);
  }
  return value;
}

function intSequence(value: PyValue | undefined, what: string, ctx: UnpickleContext): number[] {
  const items = value instanceof PyTuple ? value.items : Array.isArray(value) ? value : undefined;
  if (items === undefined) ctx.fail(`${what} is ${an(value)}, not a tuple`);
  return items.map((item) => intArg(item, `${what} entry`, ctx));
}

function rebuildTensor(
  args: PyValue[],
  loader: ArchiveLoader,
  ctx: UnpickleContext,
  what: string,
): HostTensor {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) ctx.fail(`${what}: storage is ${an(storage)}`);
  const tensor = tensorFromStorage(
    storage.storage,
    intArg(offset, `${what} storage offset`, ctx),
    intSequence(size, `${what} size`, ctx),
    intSequence(stride, `${what} stride`, ctx),
    (msg) => ctx.fail(msg),
  );
  loader.chargeTensor(tensor.data.byteLength, ctx);
  return tensor;
}

const rebuildTensorV2 = (loader: ArchiveLoader): GlobalImpl => ({
  call(args: PyValue[], ctx: UnpickleContext) {
    if (args.length < 6 || args.length > 7)
      ctx.fail(`_rebuild_tensor_v2 with ${args.length} arguments`);
    if (typeof args[4] !== 'boolean') ctx.fail('_rebuild_tensor_v2: requires_grad is not a bool');
    return rebuildTensor(args, loader, ctx, '_rebuild_tensor_v2');
  },
});

const rebuildTensorV1 = (loader: ArchiveLoader): GlobalImpl => ({
  call(args: PyValue[], ctx: UnpickleContext) {
    if (args.length !== 4) ctx.fail(`_rebuild_tensor with ${args.length} arguments`);
    return rebuildTensor(args, loader, ctx, '_rebuild_tensor');
  },
});

/** nn.Parameter carries nothing we keep beyond its tensor (requires_grad is the trainer's call). */
const rebuildParameter: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    if (args.length < 3 || args.length > 4)
      ctx.fail(`_rebuild_parameter with ${args.length} arguments`);
    if (!isHostTensor(args[0])) ctx.fail(`_rebuild_parameter of ${an(args[0])}`);
    return args[0];
  },
};

function itemsOf(value: PyValue | undefined, what: string, ctx: UnpickleContext): PyValue[] {
  if (Array.isArray(value)) return value;
  if (value instanceof PyTuple) return value.items;
  if (value instanceof PySet) return [...value.items];
  if (value instanceof PyDict) return [...value.entries.keys()];
  return ctx.fail(`${what} of ${an(value)}`);
}

const orderedDict: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    const dict = new PyDict(true);
    if (args.length === 0) return dict;
    if (args.length !== 1) ctx.fail(`OrderedDict with ${args.length} arguments`);
    const source = args[0];
    if (source instanceof PyDict) {
      ctx.charge(source.entries.size);
      for (const [k, v] of source.entries) dict.entries.set(k, v);
      return dict;
    }
    const pairs = itemsOf(source, 'OrderedDict', ctx);
    ctx.charge(pairs.length);
    for (const pair of pairs) {
      const kv = pair instanceof PyTuple ? pair.items : Array.isArray(pair) ? pair : undefined;
      if (kv === undefined || kv.length !== 2) ctx.fail('OrderedDict item is not a pair');
      const key = kv[0]!;
      if (!isPyKey(key)) ctx.fail(`${an(key)} cannot be a dict key`);
      dict.entries.set(key, kv[1]!);
    }
    return dict;
  },
};

const setOf: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    const set = new PySet();
    if (args.length === 0) return set;
    if (args.length !== 1) ctx.fail(`set with ${args.length} arguments`);
    const items = itemsOf(args[0], 'set', ctx);
    ctx.charge(items.length);
    for (const item of items) {
      if (!isPyKey(item)) ctx.fail(`${an(item)} cannot be in a set`);
      set.items.add(item);
    }
    return set;
  },
};

/** How protocol 2 spells bytes: `_codecs.encode(text, 'latin1')`. */
const codecsEncode: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    const [text, encoding] = args;
    if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
      ctx.fail('_codecs.encode is only allowed for latin-1 text');
    }
    ctx.charge(text.length);
    return latin1(text, ctx);
  },
};

/** A pathlib path in an old `opt` becomes its string. */
const pathOf: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    if (!args.every((a) => typeof a === 'string')) ctx.fail('pathlib path of non-strings');
    return (args as string[]).join('/');
  },
};

const torchSize: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    return new PyTuple(intSequence(args[0] ?? new PyTuple([]), 'torch.Size', ctx));
  },
};

const moduleClass = (qualname: string): GlobalImpl => ({
  newObject(args: PyValue[], ctx: UnpickleContext) {
    if (args.length !== 0) ctx.fail(`${qualname} instantiated with arguments`);
    return new PyObject(qualname);
  },
});

/** The allow-list: an implementation for each accepted `module.name`, undefined for the rest. */
function findGlobal(loader: ArchiveLoader, module: string, name: string): GlobalImpl | undefined {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(module))
    return undefined;
  const qualname = `${module}.${name}`;
  switch (qualname) {
    case 'collections.OrderedDict':
      return orderedDict;
    case 'torch._utils._rebuild_tensor_v2':
      return rebuildTensorV2(loader);
    case 'torch._utils._rebuild_tensor':
      return rebuildTensorV1(loader);
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
      return rebuildParameter;
    case 'builtins.set':
    case 'builtins.frozenset':
      return setOf;
    case '_codecs.encode':
      return codecsEncode;
    case 'pathlib.PosixPath':
    case 'pathlib.WindowsPath':
    case 'pathlib.PurePosixPath':
    case 'pathlib.PureWindowsPath':
      return pathOf;
    case 'torch.Size':
      return torchSize;
  }
  if (storageDtypeOf(module, name) !== undefined) return {};
  if (module === 'torch' && TORCH_DTYPE_NAMES.has(name)) return {};
  if (isModuleClassModule(module) && /^[A-Z]/.test(name)) return moduleClass(qualname);
  return numpyGlobal(module, name);
}

export interface ArchiveLimits {
  /** Bytes of tensors a file may materialise, beyond 4× its declared entry sizes. */
  tensorBytesAllowance: number;
}

/** Reads one torch zip archive: finds its prefix, serves storages, unpickles `data.pkl`. */
class ArchiveLoader {
  readonly prefix: string;
  readonly littleEndian: boolean;
  private readonly storages = new Map<string, StorageRef>();
  private tensorBudget: number;

  constructor(
    readonly zip: ZipReader,
    readonly source: string,
    limits: ArchiveLimits,
  ) {
    const pickles = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pickles.length === 0) {
      checkpointError(source, 'not a PyTorch checkpoint: the zip has no <archive>/data.pkl');
    }
    if (pickles.length > 1)
      checkpointError(source, `the zip holds ${pickles.length} archives (data.pkl files)`);
    this.prefix = pickles[0]!.slice(0, -'data.pkl'.length);
    this.littleEndian = true;
    const orderName = `${this.prefix}byteorder`;
    if (zip.has(orderName)) {
      const order = Buffer.from(zip.read(orderName)).toString('latin1').trim();
      if (order !== 'little' && order !== 'big') {
        checkpointError(source, `${orderName} says '${order.slice(0, 20)}', not 'little' or 'big'`);
      }
      this.littleEndian = order === 'little';
    }
    let declared = 0;
    for (const entry of zip.entries.values()) declared += entry.size;
    this.tensorBudget = 4 * declared + limits.tensorBytesAllowance;
  }

  chargeTensor(bytes: number, ctx: UnpickleContext): void {
    this.tensorBudget -= bytes;
    if (this.tensorBudget < 0) ctx.fail('tensors would take far more memory than the file holds');
  }

  /** BINPERSID `('storage', torch.FloatStorage, key, location, numel)`. */
  persistentLoad(pid: PyValue, ctx: UnpickleContext): PyValue {
    if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
      ctx.fail(`persistent id is ${an(pid)}, not ('storage', type, key, location, numel)`);
    }
    const [, type, key, location, numelValue] = pid.items;
    const dtype = storageDtype(type!);
    if (dtype === undefined) ctx.fail(`persistent id names ${an(type)}, not a storage class`);
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key)) ctx.fail('bad storage key');
    if (typeof location !== 'string') ctx.fail(`storage '${key}': location is ${an(location)}`);
    const numel = intArg(numelValue, `storage '${key}' size`, ctx);
    if (numel < 0) ctx.fail(`storage '${key}' has negative size ${numel}`);
    const cacheKey = `${dtype}:${key}`;
    const cached = this.storages.get(cacheKey);
    if (cached !== undefined) {
      if (cached.storage.numel !== numel) ctx.fail(`storage '${key}' is used with two sizes`);
      return cached;
    }
    const name = `${this.prefix}data/${key}`;
    if (!this.zip.has(name)) ctx.fail(`storage '${key}' is missing: no zip entry '${name}'`);
    const expected = numel * DTYPES[dtype].itemSize;
    const size = this.zip.entries.get(name)!.size;
    if (size !== expected) {
      ctx.fail(
        `storage '${key}' holds ${size} bytes but ${numel} ${dtype} values need ${expected}`,
      );
    }
    const bytes = this.zip.read(name);
    const ref = new StorageRef({ key, dtype, numel, bytes, littleEndian: this.littleEndian });
    this.storages.set(cacheKey, ref);
    return ref;
  }

  load(): PyValue {
    const name = `${this.prefix}data.pkl`;
    return unpickle(this.zip.read(name), {
      source: this.source,
      name,
      findGlobal: (module, global) => findGlobal(this, module, global),
      persistentLoad: (pid, ctx) => this.persistentLoad(pid, ctx),
    });
  }
}

export interface TorchArchive {
  /** The value torch.save pickled, tensors rebuilt. */
  value: PyValue;
  /** The archive folder inside the zip, e.g. `best/`. */
  prefix: string;
}

/** Opens a PyTorch zip checkpoint held in memory and unpickles its data. */
export function loadTorchArchive(
  bytes: Uint8Array,
  source: string,
  limits: ArchiveLimits = { tensorBytesAllowance: 64 * 2 ** 20 },
): TorchArchive {
  const loader = new ArchiveLoader(new ZipReader(bytes, source), source, limits);
  return { value: loader.load(), prefix: loader.prefix };
}

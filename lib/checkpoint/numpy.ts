/**
 * The few numpy globals a YOLOv5 training checkpoint holds (`best_fitness` is a numpy array until
 * the checkpoint is stripped), rebuilt as data: arrays become host tensors, scalars numbers.
 */
import { PyGlobal, PyOpaque, PyTuple, an, describe } from './pickle';
import type { GlobalImpl, PyValue, UnpickleContext } from './pickle';
import { DTYPES, halfToFloat, numelOf, tensorFromStorage } from './tensor';
import type { DType, HostTensor } from './tensor';

const NUMPY_DTYPES: Record<string, DType> = {
  f2: 'float16',
  f4: 'float32',
  f8: 'float64',
  i1: 'int8',
  i2: 'int16',
  i4: 'int32',
  i8: 'int64',
  u1: 'uint8',
  b1: 'bool',
};

/** `numpy.dtype('f8', …)`; BUILD later gives its byte order. */
export class NumpyDtype extends PyOpaque {
  readonly pyType = 'numpy.dtype';
  littleEndian = true;
  constructor(readonly dtype: DType) {
    super();
  }
  override build(state: PyValue, ctx: UnpickleContext): void {
    if (!(state instanceof PyTuple) || state.items.length < 2) ctx.fail('bad numpy dtype state');
    const order = state.items[1];
    if (order === '>') this.littleEndian = false;
    else if (order !== '<' && order !== '|' && order !== '=')
      ctx.fail(`bad numpy byte order ${describe(order)}`);
  }
}

/** `numpy.core.multiarray._reconstruct(ndarray, …)` followed by a BUILD with shape, dtype and bytes. */
export class NumpyArray extends PyOpaque {
  readonly pyType = 'numpy.ndarray';
  tensor: HostTensor | undefined;
  override build(state: PyValue, ctx: UnpickleContext): void {
    if (!(state instanceof PyTuple) || state.items.length !== 5) ctx.fail('bad numpy array state');
    const [, shapeValue, dtype, fortran, raw] = state.items;
    if (!(dtype instanceof NumpyDtype)) ctx.fail(`numpy array with ${an(dtype)} dtype`);
    const shape = intList(shapeValue, 'numpy array shape', ctx);
    const bytes = typeof raw === 'string' ? latin1(raw, ctx) : raw;
    if (!(bytes instanceof Uint8Array))
      ctx.fail(`numpy array data is ${an(raw)} (object arrays are not supported)`);
    const numel = numelOf(shape);
    if (!Number.isSafeInteger(numel) || numel * DTYPES[dtype.dtype].itemSize !== bytes.length) {
      ctx.fail(`numpy array of shape [${shape.join(', ')}] has ${bytes.length} data bytes`);
    }
    // Fortran order is column-major: the first index moves fastest
    const stride = shape.map(() => 1);
    if (fortran === true)
      for (let i = 1; i < shape.length; i++) stride[i] = stride[i - 1]! * shape[i - 1]!;
    else for (let i = shape.length - 2; i >= 0; i--) stride[i] = stride[i + 1]! * shape[i + 1]!;
    const storage = {
      key: 'numpy',
      dtype: dtype.dtype,
      numel,
      bytes,
      littleEndian: dtype.littleEndian,
    };
    this.tensor = tensorFromStorage(storage, 0, shape, stride, (what) => ctx.fail(what));
  }
}

function intList(value: PyValue | undefined, what: string, ctx: UnpickleContext): number[] {
  const items = value instanceof PyTuple ? value.items : Array.isArray(value) ? value : undefined;
  if (items === undefined) ctx.fail(`${what} is ${an(value)}`);
  return items.map((v) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      ctx.fail(`${what} holds ${describe(v)} ${String(v)}`);
    return v;
  });
}

/** Python 2-style byte strings (protocol 2 pickles bytes as latin-1 text). */
export function latin1(text: string, ctx: UnpickleContext): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) ctx.fail('latin-1 bytes with a character beyond U+00FF');
    out[i] = c;
  }
  return out;
}

const numpyDtype: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    const code = args[0];
    if (typeof code !== 'string') ctx.fail(`numpy.dtype of ${an(code)}`);
    const key = code.replace(/^[<>=|]/, '');
    const dtype = Object.prototype.hasOwnProperty.call(NUMPY_DTYPES, key)
      ? NUMPY_DTYPES[key]
      : undefined;
    if (dtype === undefined) ctx.fail(`numpy dtype '${code.slice(0, 20)}' is not supported`);
    return new NumpyDtype(dtype);
  },
};

const reconstruct: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    const cls = args[0];
    if (!(cls instanceof PyGlobal) || cls.name !== 'ndarray')
      ctx.fail(`numpy _reconstruct of ${an(cls)}`);
    return new NumpyArray();
  },
};

const scalar: GlobalImpl = {
  call(args: PyValue[], ctx: UnpickleContext) {
    const [dtype, raw] = args;
    if (!(dtype instanceof NumpyDtype)) ctx.fail(`numpy scalar with ${an(dtype)} dtype`);
    const bytes = typeof raw === 'string' ? latin1(raw, ctx) : raw;
    if (!(bytes instanceof Uint8Array) || bytes.length !== DTYPES[dtype.dtype].itemSize) {
      ctx.fail('numpy scalar data does not match its dtype');
    }
    const storage = {
      key: 'numpy',
      dtype: dtype.dtype,
      numel: 1,
      bytes,
      littleEndian: dtype.littleEndian,
    };
    const t = tensorFromStorage(storage, 0, [], [], (what) => ctx.fail(what));
    if (t.dtype === 'bool') return t.data[0] !== 0;
    if (t.dtype === 'int64') {
      const v = t.data[0]!;
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(v)
        : v;
    }
    if (t.dtype === 'float16') return halfToFloat(t.data[0]!);
    return Number(t.data[0]!);
  },
};

/** numpy globals by `module.name`; numpy ≥ 2 moved `numpy.core` to `numpy._core`. */
export function numpyGlobal(module: string, name: string): GlobalImpl | undefined {
  if (module === 'numpy' && name === 'ndarray') return {};
  if (module === 'numpy' && name === 'dtype') return numpyDtype;
  if (module === 'numpy.core.multiarray' || module === 'numpy._core.multiarray') {
    if (name === '_reconstruct') return reconstruct;
    if (name === 'scalar') return scalar;
  }
  return undefined;
}

/** Replaces a rebuilt numpy value by its tensor (used when converting to plain data). */
export function numpyTensor(value: unknown): HostTensor | undefined {
  return value instanceof NumpyArray ? value.tensor : undefined;
}

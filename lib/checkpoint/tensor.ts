/** Host tensors: dtypes, row-major typed arrays, half/bfloat16 conversions and strided gathers. */

export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

/** The typed array holding each dtype; float16/bfloat16 keep their raw 16-bit patterns. */
export interface TensorArrayOf {
  float32: Float32Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  float64: Float64Array;
  int64: BigInt64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

export type TensorData = TensorArrayOf[DType];

/** A tensor on the host: contiguous, row-major `data` of `shape` (a scalar has shape []). */
export type HostTensor = {
  [D in DType]: { dtype: D; shape: number[]; data: TensorArrayOf[D] };
}[DType];

export interface DTypeInfo {
  itemSize: number;
  /** The legacy PyTorch storage class naming this dtype (`torch.<storage>`). */
  storage: string;
  isFloat: boolean;
  create(length: number): TensorData;
  view(buffer: ArrayBuffer, byteOffset: number, length: number): TensorData;
}

function info<T extends TensorData>(
  itemSize: number,
  storage: string,
  isFloat: boolean,
  Ctor: {
    new (length: number): T;
    new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  },
): DTypeInfo {
  return {
    itemSize,
    storage,
    isFloat,
    create: (length) => new Ctor(length),
    view: (buffer, byteOffset, length) => new Ctor(buffer, byteOffset, length),
  };
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  float32: info(4, 'FloatStorage', true, Float32Array),
  float16: info(2, 'HalfStorage', true, Uint16Array),
  bfloat16: info(2, 'BFloat16Storage', true, Uint16Array),
  float64: info(8, 'DoubleStorage', true, Float64Array),
  int64: info(8, 'LongStorage', false, BigInt64Array),
  int32: info(4, 'IntStorage', false, Int32Array),
  int16: info(2, 'ShortStorage', false, Int16Array),
  int8: info(1, 'CharStorage', false, Int8Array),
  uint8: info(1, 'ByteStorage', false, Uint8Array),
  bool: info(1, 'BoolStorage', false, Uint8Array),
};

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, value);
}

const ARRAY_OF_DTYPE: Record<DType, abstract new (...args: never[]) => unknown> = {
  float32: Float32Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

/** Duck-typed check: a dtype we know, a shape of non-negative integers and the matching typed array. */
export function isHostTensor(value: unknown): value is HostTensor {
  if (typeof value !== 'object' || value === null) return false;
  const t = value as { dtype?: unknown; shape?: unknown; data?: unknown };
  return (
    isDType(t.dtype) &&
    Array.isArray(t.shape) &&
    t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) &&
    t.data instanceof ARRAY_OF_DTYPE[t.dtype]
  );
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses the byte order of every `itemSize`-byte element in place. */
export function swapBytes(bytes: Uint8Array, itemSize: number): void {
  if (itemSize === 1) return;
  for (let i = 0; i + itemSize <= bytes.length; i += itemSize) {
    for (let a = i, b = i + itemSize - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

// ---- float16 / bfloat16 ----------------------------------------------------------------------

/** One float16 bit pattern as a number: subnormals, ±inf and NaN included. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

let halfTable: Float32Array | undefined;
/** All 65536 half values, built once: array conversion becomes one lookup per element. */
function halfLookup(): Float32Array {
  if (halfTable === undefined) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  return halfTable;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Rounds a number to the nearest float16 (ties to even, via its float32 value); returns the bits. */
export function floatToHalf(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return mantissa === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mantissa >>> 13);
  const halfExponent = exponent - 112;
  if (halfExponent >= 31) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // subnormal half: value / 2^-24 rounded; below 2^-25 everything rounds to zero
    const shift = 126 - exponent;
    if (shift > 25) return sign;
    const full = mantissa | 0x800000;
    const halfway = 1 << (shift - 1);
    const rest = full & ((1 << shift) - 1);
    let m = full >>> shift;
    if (rest > halfway || (rest === halfway && (m & 1) === 1)) m++;
    return sign | m;
  }
  let h = sign | (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // a carry out of the mantissa bumps the exponent, up to infinity, as it should
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return h;
}

export function bfloat16ToFloat(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0]!;
}

/** The tensor's values as float32: the same array for float32, a converted copy otherwise. */
export function toFloat32(tensor: HostTensor): Float32Array {
  switch (tensor.dtype) {
    case 'float32':
      return tensor.data;
    case 'float16': {
      const table = halfLookup();
      const src = tensor.data;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
      return out;
    }
    case 'bfloat16': {
      // bfloat16 is the top half of a float32
      const out = new Float32Array(tensor.data.length);
      const words = new Uint32Array(out.buffer);
      for (let i = 0; i < words.length; i++) words[i] = tensor.data[i]! << 16;
      return out;
    }
    case 'int64': {
      const out = new Float32Array(tensor.data.length);
      for (let i = 0; i < out.length; i++) out[i] = Number(tensor.data[i]!);
      return out;
    }
    default:
      return Float32Array.from(tensor.data as ArrayLike<number>);
  }
}

/** Float32 values to float16 bit patterns, rounding to nearest even. */
export function float32ToHalf(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]!);
  return out;
}

/** A floating tensor stored as float16 (`half: true` checkpoints); other dtypes are returned as is. */
export function toHalf(tensor: HostTensor): HostTensor {
  if (tensor.dtype === 'float16' || !DTYPES[tensor.dtype].isFloat) return tensor;
  return { dtype: 'float16', shape: tensor.shape.slice(), data: float32ToHalf(toFloat32(tensor)) };
}

// ---- strided views of storages ---------------------------------------------------------------

/** The raw bytes of one saved storage (`<archive>/data/<key>`), in the file's byte order. */
export interface StorageBytes {
  key: string;
  dtype: DType;
  numel: number;
  bytes: Uint8Array;
  littleEndian: boolean;
}

export interface TensorLimits {
  maxRank: number;
  /** Elements a tensor may have beyond its storage's (zero strides repeat values). */
  maxExpandedElements: number;
}

export const DEFAULT_TENSOR_LIMITS: TensorLimits = { maxRank: 64, maxExpandedElements: 1 << 24 };

/**
 * Gathers `storage[offset + Σ index_i·stride_i]` into a contiguous row-major tensor. Every index is
 * checked against the storage first, so a malformed file cannot read out of bounds; `fail` throws.
 */
export function tensorFromStorage(
  storage: StorageBytes,
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
  fail: (what: string) => never,
  limits: TensorLimits = DEFAULT_TENSOR_LIMITS,
): HostTensor {
  const where = `tensor on storage '${storage.key}'`;
  if (shape.length !== stride.length) {
    fail(`${where}: size has ${shape.length} dims but stride has ${stride.length}`);
  }
  if (shape.length > limits.maxRank)
    fail(`${where}: ${shape.length} dims (at most ${limits.maxRank})`);
  if (!Number.isSafeInteger(offset) || offset < 0) fail(`${where}: bad storage offset ${offset}`);
  let numel = 1;
  for (let i = 0; i < shape.length; i++) {
    const size = shape[i]!;
    const step = stride[i]!;
    if (!Number.isSafeInteger(size) || size < 0) fail(`${where}: bad size ${size} in dim ${i}`);
    if (!Number.isSafeInteger(step) || step < 0) fail(`${where}: bad stride ${step} in dim ${i}`);
    numel *= size;
    if (!Number.isSafeInteger(numel)) fail(`${where}: too many elements`);
  }
  const info = DTYPES[storage.dtype];
  if (numel === 0) {
    if (offset > storage.numel) {
      fail(`${where}: offset ${offset} beyond the storage's ${storage.numel} elements`);
    }
    return { dtype: storage.dtype, shape: shape.slice(), data: info.create(0) } as HostTensor;
  }
  let last = offset;
  for (let i = 0; i < shape.length; i++) {
    last += (shape[i]! - 1) * stride[i]!;
    if (last >= storage.numel) break;
  }
  if (last >= storage.numel) {
    fail(
      `${where}: size [${shape.join(', ')}] stride [${stride.join(', ')}] offset ${offset} ` +
        `reaches element ${last} but the storage holds ${storage.numel}`,
    );
  }
  if (numel > storage.numel && numel > limits.maxExpandedElements) {
    fail(`${where}: ${numel} elements repeated from a storage of ${storage.numel}`);
  }
  const itemSize = info.itemSize;
  const swap = storage.littleEndian !== HOST_LITTLE_ENDIAN;
  if (isRowMajor(shape, stride)) {
    const start = storage.bytes.byteOffset + offset * itemSize;
    const buffer = storage.bytes.buffer.slice(start, start + numel * itemSize) as ArrayBuffer;
    if (swap) swapBytes(new Uint8Array(buffer), itemSize);
    return {
      dtype: storage.dtype,
      shape: shape.slice(),
      data: info.view(buffer, 0, numel),
    } as HostTensor;
  }
  const src = alignedStorage(storage);
  const out = info.create(numel);
  gather(src, out, offset, shape, stride);
  return { dtype: storage.dtype, shape: shape.slice(), data: out } as HostTensor;
}

function isRowMajor(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 1) continue;
    if (stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

const alignedCache = new WeakMap<StorageBytes, TensorData>();

/** The storage as a typed array in host order; copied once so its start is element-aligned. */
function alignedStorage(storage: StorageBytes): TensorData {
  let view = alignedCache.get(storage);
  if (view === undefined) {
    const info = DTYPES[storage.dtype];
    const start = storage.bytes.byteOffset;
    const buffer = storage.bytes.buffer.slice(
      start,
      start + storage.numel * info.itemSize,
    ) as ArrayBuffer;
    if (storage.littleEndian !== HOST_LITTLE_ENDIAN)
      swapBytes(new Uint8Array(buffer), info.itemSize);
    view = info.view(buffer, 0, storage.numel);
    alignedCache.set(storage, view);
  }
  return view;
}

/** Walks the index space in row-major order, the last dim in the inner loop. */
function gather(
  src: TensorData,
  out: TensorData,
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
): void {
  const source = src as unknown as { [i: number]: number };
  const target = out as unknown as { [i: number]: number };
  const rank = shape.length;
  const innerSize = shape[rank - 1]!;
  const innerStride = stride[rank - 1]!;
  const index = new Array<number>(rank).fill(0);
  let base = offset;
  let o = 0;
  for (;;) {
    for (let k = 0, s = base; k < innerSize; k++, s += innerStride) target[o++] = source[s]!;
    let d = rank - 2;
    for (; d >= 0; d--) {
      base += stride[d]!;
      if (++index[d]! < shape[d]!) break;
      base -= stride[d]! * shape[d]!;
      index[d] = 0;
    }
    if (d < 0) return;
  }
}

/// <reference types="node" preserve="true" />
/**
 * A pickle writer (protocol 2) for plain data: None, bools, ints, floats, strings, lists, tuples,
 * dicts, OrderedDicts and tensors (as `torch._utils._rebuild_tensor_v2` over persistent storages),
 * which is everything `torch.load(..., weights_only=True)` accepts — and, for the Python YOLOv5
 * export only, class instances (NEWOBJ + BUILD) and calls (REDUCE), which need `weights_only=False`.
 */
import { OP, PyDict, PyTuple } from './pickle';
import { isHostTensor } from './tensor';
import type { HostTensor } from './tensor';

/**
 * An instance of `module.name` created without arguments and given `state` (pickle's NEWOBJ then
 * BUILD, as Python pickles an nn.Module); one instance written twice stays one object.
 */
export class PyInstance {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly state: Picklable,
  ) {}
}

/** A Python float even when integral (`2.0`, where a JS number 2 would be written as an int). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** A call `module.name(*args)` in the pickle (REDUCE): a set, an nn.Parameter. */
export class PyCall {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly args: readonly Picklable[],
  ) {}
}

/** What the pickler accepts; plain objects and Maps become dicts, PyDict(ordered) an OrderedDict. */
export type Picklable =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | readonly Picklable[]
  | PyTuple
  | PyDict
  | PyInstance
  | PyCall
  | PyFloat
  | ReadonlyMap<string | number | bigint | boolean | null, Picklable>
  | HostTensor
  | { readonly [key: string]: Picklable };

/** Where a tensor's data goes: the storage class and key the pickle names. */
export interface PersistedStorage {
  /** `FloatStorage`, `HalfStorage`, … (module `torch`). */
  storageClass: string;
  key: string;
  numel: number;
  /** The tensor as written, e.g. converted to float16; its shape gives size and stride. */
  shape: readonly number[];
}

export interface PicklerHooks {
  /** Called once per distinct tensor object; `path` names it for messages. */
  persistTensor(tensor: HostTensor, path: string): PersistedStorage;
  fail(what: string): never;
}

/** Python batches APPENDS/SETITEMS by this many items; so do we. */
const BATCH = 1000;
const MAX_DEPTH = 1000;

/** A growable byte buffer. */
class ByteSink {
  private buffer = Buffer.allocUnsafe(1 << 16);
  length = 0;
  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }
  byte(b: number): void {
    this.reserve(1);
    this.buffer[this.length++] = b;
  }
  u16(v: number): void {
    this.reserve(2);
    this.buffer.writeUInt16LE(v, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.buffer.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.buffer.writeInt32LE(v, this.length);
    this.length += 4;
  }
  f64be(v: number): void {
    this.reserve(8);
    this.buffer.writeDoubleBE(v, this.length);
    this.length += 8;
  }
  bytes(data: Uint8Array): void {
    this.reserve(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }
  result(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function isPlainObject(value: object): value is { readonly [key: string]: Picklable } {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

export class Pickler {
  private readonly out = new ByteSink();
  /** Memo slots: tensors by identity, strings and globals by value. */
  private readonly memo = new Map<HostTensor, number>();
  private readonly instanceMemo = new Map<PyInstance, number>();
  private readonly stringMemo = new Map<string, number>();
  private readonly globalMemo = new Map<string, number>();
  private memoCount = 0;
  private readonly active = new Set<object>();

  constructor(private readonly hooks: PicklerHooks) {}

  /** Pickles one value and returns the pickle. */
  dump(value: Picklable): Buffer {
    this.out.byte(OP.PROTO);
    this.out.byte(2);
    this.save(value, '', 0);
    this.out.byte(OP.STOP);
    return this.out.result();
  }

  private put<K>(memo: Map<K, number>, key: K): void {
    const index = this.memoCount++;
    memo.set(key, index);
    if (index < 256) {
      this.out.byte(OP.BINPUT);
      this.out.byte(index);
    } else {
      this.out.byte(OP.LONG_BINPUT);
      this.out.u32(index);
    }
  }

  /** Emits a memo reference when `key` was saved before. */
  private get<K>(memo: Map<K, number>, key: K): boolean {
    const index = memo.get(key);
    if (index === undefined) return false;
    if (index < 256) {
      this.out.byte(OP.BINGET);
      this.out.byte(index);
    } else {
      this.out.byte(OP.LONG_BINGET);
      this.out.u32(index);
    }
    return true;
  }

  private global(module: string, name: string): void {
    const key = `${module}.${name}`;
    if (this.get(this.globalMemo, key)) return;
    this.out.byte(OP.GLOBAL);
    this.out.bytes(Buffer.from(`${module}\n${name}\n`, 'ascii'));
    this.put(this.globalMemo, key);
  }

  private int(value: number | bigint): void {
    if (typeof value === 'number' && value >= 0 && value < 256) {
      this.out.byte(OP.BININT1);
      this.out.byte(value);
    } else if (typeof value === 'number' && value >= 0 && value < 65536) {
      this.out.byte(OP.BININT2);
      this.out.u16(value);
    } else if (typeof value === 'number' && value >= -(2 ** 31) && value < 2 ** 31) {
      this.out.byte(OP.BININT);
      this.out.i32(value);
    } else {
      // little-endian two's complement, as few bytes as keep the sign
      const bytes: number[] = [];
      let v = BigInt(value);
      for (;;) {
        const b = Number(v & 0xffn);
        bytes.push(b);
        v >>= 8n;
        if ((v === 0n && (b & 0x80) === 0) || (v === -1n && (b & 0x80) !== 0)) break;
      }
      this.out.byte(OP.LONG1);
      this.out.byte(bytes.length);
      this.out.bytes(Uint8Array.from(bytes));
    }
  }

  private string(value: string): void {
    if (this.get(this.stringMemo, value)) return;
    const bytes = Buffer.from(value, 'utf8');
    this.out.byte(OP.BINUNICODE);
    this.out.u32(bytes.length);
    this.out.bytes(bytes);
    this.put(this.stringMemo, value);
  }

  private tuple(items: readonly Picklable[], path: string, depth: number): void {
    if (items.length === 0) {
      this.out.byte(OP.EMPTY_TUPLE);
      return;
    }
    if (items.length > 3) this.out.byte(OP.MARK);
    items.forEach((item, i) => this.save(item, `${path}[${i}]`, depth + 1));
    this.out.byte(
      items.length === 1
        ? OP.TUPLE1
        : items.length === 2
          ? OP.TUPLE2
          : items.length === 3
            ? OP.TUPLE3
            : OP.TUPLE,
    );
  }

  private list(items: readonly Picklable[], path: string, depth: number): void {
    this.out.byte(OP.EMPTY_LIST);
    for (let start = 0; start < items.length; start += BATCH) {
      this.out.byte(OP.MARK);
      const end = Math.min(items.length, start + BATCH);
      for (let i = start; i < end; i++) this.save(items[i], `${path}[${i}]`, depth + 1);
      this.out.byte(OP.APPENDS);
    }
  }

  private dictItems(entries: [Picklable, Picklable][], path: string, depth: number): void {
    for (let start = 0; start < entries.length; start += BATCH) {
      this.out.byte(OP.MARK);
      const end = Math.min(entries.length, start + BATCH);
      for (let i = start; i < end; i++) {
        const [key, value] = entries[i]!;
        if (key !== null && typeof key === 'object')
          this.hooks.fail(`${path || 'value'}: a dict key must be a string or number`);
        this.save(key, path, depth + 1);
        this.save(
          value,
          typeof key === 'string' ? (path ? `${path}.${key}` : key) : `${path}[${String(key)}]`,
          depth + 1,
        );
      }
      this.out.byte(OP.SETITEMS);
    }
  }

  private tensor(tensor: HostTensor, path: string): void {
    if (this.get(this.memo, tensor)) return;
    const stored = this.hooks.persistTensor(tensor, path || 'value');
    const shape = stored.shape;
    const stride = shape.map(() => 1);
    for (let i = shape.length - 2; i >= 0; i--) stride[i] = stride[i + 1]! * shape[i + 1]!;
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.out.byte(OP.MARK);
    this.out.byte(OP.MARK);
    this.string('storage');
    this.global('torch', stored.storageClass);
    this.string(stored.key);
    this.string('cpu');
    this.int(stored.numel);
    this.out.byte(OP.TUPLE);
    this.out.byte(OP.BINPERSID);
    this.int(0);
    this.tuple(shape, path, 0);
    this.tuple(stride, path, 0);
    this.out.byte(OP.NEWFALSE);
    this.global('collections', 'OrderedDict');
    this.out.byte(OP.EMPTY_TUPLE);
    this.out.byte(OP.REDUCE);
    this.out.byte(OP.TUPLE);
    this.out.byte(OP.REDUCE);
    this.put(this.memo, tensor);
  }

  private save(value: Picklable, path: string, depth: number): void {
    if (depth > MAX_DEPTH) this.hooks.fail(`${path}: nested deeper than ${MAX_DEPTH}`);
    if (value === null || value === undefined) {
      this.out.byte(OP.NONE);
      return;
    }
    switch (typeof value) {
      case 'boolean':
        this.out.byte(value ? OP.NEWTRUE : OP.NEWFALSE);
        return;
      case 'number':
        if (Number.isSafeInteger(value) && !Object.is(value, -0)) {
          this.int(value);
        } else {
          this.out.byte(OP.BINFLOAT);
          this.out.f64be(value);
        }
        return;
      case 'bigint':
        this.int(value);
        return;
      case 'string':
        this.string(value);
        return;
      case 'object':
        break;
      default:
        this.hooks.fail(`${path || 'value'}: cannot save a ${typeof value}`);
    }
    if (isHostTensor(value)) {
      this.tensor(value, path);
      return;
    }
    if (value instanceof PyFloat) {
      this.out.byte(OP.BINFLOAT);
      this.out.f64be(value.value);
      return;
    }
    if (value instanceof PyInstance && this.get(this.instanceMemo, value)) return;
    if (this.active.has(value)) this.hooks.fail(`${path || 'value'}: refers to itself`);
    this.active.add(value);
    if (Array.isArray(value)) {
      this.list(value as readonly Picklable[], path, depth);
    } else if (value instanceof PyInstance) {
      this.global(value.module, value.name);
      this.out.byte(OP.EMPTY_TUPLE);
      this.out.byte(OP.NEWOBJ);
      this.put(this.instanceMemo, value);
      this.save(value.state, path, depth + 1);
      this.out.byte(OP.BUILD);
    } else if (value instanceof PyCall) {
      this.global(value.module, value.name);
      this.tuple(value.args, path, depth);
      this.out.byte(OP.REDUCE);
    } else if (value instanceof PyTuple) {
      this.tuple(value.items as Picklable[], path, depth);
    } else if (value instanceof PyDict) {
      if (value.ordered) {
        this.global('collections', 'OrderedDict');
        this.out.byte(OP.EMPTY_TUPLE);
        this.out.byte(OP.REDUCE);
      } else {
        this.out.byte(OP.EMPTY_DICT);
      }
      this.dictItems([...value.entries] as [Picklable, Picklable][], path, depth);
    } else if (value instanceof Map) {
      this.out.byte(OP.EMPTY_DICT);
      this.dictItems([...value.entries()] as [Picklable, Picklable][], path, depth);
    } else if (isPlainObject(value)) {
      this.out.byte(OP.EMPTY_DICT);
      this.dictItems(Object.entries(value), path, depth);
    } else {
      const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
      this.hooks.fail(`${path || 'value'}: cannot save a ${name} (only plain data and tensors)`);
    }
    this.active.delete(value);
  }
}

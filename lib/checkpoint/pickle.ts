/**
 * A restricted unpickler (protocols 2–5, the opcodes torch.save emits and a few more). It builds
 * data only: every global is looked up in a caller-given allow-list, and those globals are
 * implemented here in JS — nothing from the file is ever executed.
 */
import { Yolo5Error } from '../errors';
import { short } from './error';
import type { HostTensor } from './tensor';

// ---- Python values ---------------------------------------------------------------------------

/** A Python tuple (lists are JS arrays). */
export class PyTuple {
  readonly pyType = 'tuple';
  constructor(readonly items: PyValue[]) {}
}

/** Python values usable as dict keys in a JS Map: primitives, tuples and globals by identity. */
export type PyKey = null | boolean | number | bigint | string | PyTuple | PyGlobal;

/** A Python dict or OrderedDict; keys keep their Python types (`{0: 'person'}` has number keys). */
export class PyDict {
  readonly pyType: string;
  readonly entries = new Map<PyKey, PyValue>();
  /** Attributes set through BUILD (a state dict's `_metadata`), kept but not interpreted. */
  attributes?: PyValue;
  constructor(readonly ordered = false) {
    this.pyType = ordered ? 'collections.OrderedDict' : 'dict';
  }
  get(key: PyKey): PyValue | undefined {
    return this.entries.get(key);
  }
}

/** A Python set or frozenset. */
export class PySet {
  readonly pyType = 'set';
  readonly items = new Set<PyKey>();
}

/**
 * An instance of an allowed class (an nn.Module, `models.common.Conv`, …) as an attribute bag:
 * its `__class__` and the state BUILD gave it. It has no behaviour.
 */
export class PyObject {
  readonly pyType = 'object';
  readonly attributes = new Map<string, PyValue>();
  constructor(readonly __class__: string) {}
  get(name: string): PyValue | undefined {
    return this.attributes.get(name);
  }
}

/** Values an allow-listed global produces that are none of the above (storages, numpy dtypes). */
export abstract class PyOpaque {
  abstract readonly pyType: string;
  /** BUILD on this value; the default refuses. */
  build(state: PyValue, ctx: UnpickleContext): void {
    ctx.fail(`BUILD on ${this.pyType} is not allowed`);
  }
}

/** A global the allow-list accepted; used as a value it stands for itself (e.g. `torch.float16`). */
export class PyGlobal {
  readonly pyType = 'global';
  constructor(
    readonly module: string,
    readonly name: string,
    readonly impl: GlobalImpl,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | PyDict
  | PySet
  | PyObject
  | PyGlobal
  | PyOpaque
  | HostTensor;

/** What a global does when called (REDUCE) or instantiated (NEWOBJ); neither means value-only. */
export interface GlobalImpl {
  call?(args: PyValue[], ctx: UnpickleContext): PyValue;
  newObject?(args: PyValue[], ctx: UnpickleContext): PyValue;
}

export interface UnpickleContext {
  /** Throws the checkpoint error, naming the pickle and the byte offset. */
  fail(what: string): never;
  /** Counts work done on behalf of the file (copies of containers); fails past the budget. */
  charge(units: number): void;
}

export interface UnpickleLimits {
  maxStack: number;
  /** MARKs open at once. */
  maxMarks: number;
  maxMemo: number;
  /** Bytes of one Python int (LONG1/LONG4). */
  maxLongBytes: number;
  /** Work units per pickle byte, on top of a fixed allowance. */
  workPerByte: number;
}

export const DEFAULT_UNPICKLE_LIMITS: UnpickleLimits = {
  maxStack: 100_000,
  maxMarks: 1000,
  maxMemo: 10_000_000,
  maxLongBytes: 64,
  workPerByte: 16,
};

export interface UnpickleOptions {
  /** The file, for messages and the error's `file`. */
  source: string;
  /** The pickle inside the file, for messages (e.g. `archive/data.pkl`). */
  name?: string;
  /** The allow-list: an implementation for an accepted global, undefined to refuse it. */
  findGlobal(module: string, name: string): GlobalImpl | undefined;
  /** BINPERSID: turns a persistent id (torch: a storage reference) into a value. */
  persistentLoad?(pid: PyValue, ctx: UnpickleContext): PyValue;
  limits?: Partial<UnpickleLimits>;
}

// ---- opcodes ---------------------------------------------------------------------------------

/** Pickle opcodes (the ones torch.save emits and the writer uses). */
export const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  POP_MARK: 0x31,
  DUP: 0x32,
  FLOAT: 0x46,
  INT: 0x49,
  BININT: 0x4a,
  BININT1: 0x4b,
  LONG: 0x4c,
  BININT2: 0x4d,
  NONE: 0x4e,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55,
  BINUNICODE: 0x58,
  APPEND: 0x61,
  BUILD: 0x62,
  GLOBAL: 0x63,
  DICT: 0x64,
  EMPTY_DICT: 0x7d,
  APPENDS: 0x65,
  GET: 0x67,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  LIST: 0x6c,
  EMPTY_LIST: 0x5d,
  PUT: 0x70,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEM: 0x73,
  TUPLE: 0x74,
  EMPTY_TUPLE: 0x29,
  SETITEMS: 0x75,
  BINFLOAT: 0x47,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
} as const;

/** Opcodes we know but refuse, with why. */
const REFUSED: Record<number, string> = {
  0x50: 'PERSID (text persistent ids)',
  0x53: 'STRING (protocol 0 strings)',
  0x56: 'UNICODE (protocol 0 strings)',
  0x69: 'INST (protocol 0 instances)',
  0x6f: 'OBJ (protocol 0 instances)',
  0x82: 'EXT1 (extension registry)',
  0x83: 'EXT2 (extension registry)',
  0x84: 'EXT4 (extension registry)',
  0x97: 'NEXT_BUFFER (out-of-band buffers)',
  0x98: 'READONLY_BUFFER (out-of-band buffers)',
};

// ---- the machine -----------------------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Whether a value can be a dict key or set item (hashable in Python, by identity for tuples). */
export function isPyKey(value: PyValue): value is PyKey {
  return (
    value === null ||
    typeof value !== 'object' ||
    value instanceof PyTuple ||
    value instanceof PyGlobal
  );
}

class Unpickler implements UnpickleContext {
  private pos = 0;
  /** Start of the opcode being run, for messages. */
  private opStart = 0;
  private readonly stack: PyValue[] = [];
  private readonly marks: number[] = [];
  private fence = 0;
  /** Memo indices are dense in practice: an array, with a Map for far-out indices. */
  private readonly memo: PyValue[] = [];
  private readonly sparseMemo = new Map<number, PyValue>();
  private memoCount = 0;
  private work: number;
  private readonly limits: UnpickleLimits;
  private readonly view: DataView;

  constructor(
    private readonly data: Uint8Array,
    private readonly options: UnpickleOptions,
  ) {
    this.limits = { ...DEFAULT_UNPICKLE_LIMITS, ...options.limits };
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.work = data.length * this.limits.workPerByte + 1_000_000;
  }

  fail(what: string): never {
    const { source, name = 'pickle' } = this.options;
    throw new Yolo5Error('E_CHECKPOINT', `${source}: ${name} at byte ${this.opStart}: ${what}`, {
      file: source,
    });
  }

  charge(units: number): void {
    this.work -= units;
    if (this.work < 0)
      this.fail('the pickle asks for too much work (amplification through shared containers?)');
  }

  // -- input --

  private need(n: number, what: string): void {
    if (n > this.data.length - this.pos) {
      this.fail(
        `truncated pickle: ${what} needs ${n} bytes but ${this.data.length - this.pos} remain`,
      );
    }
  }
  private u8(): number {
    this.need(1, 'argument');
    return this.data[this.pos++]!;
  }
  private u16(): number {
    this.need(2, 'argument');
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  private u32(): number {
    this.need(4, 'argument');
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  private i32(): number {
    this.need(4, 'argument');
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  private u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    // a length beyond 2^53 is beyond any file
    return hi >= 2 ** 21 ? Number.MAX_SAFE_INTEGER : lo + hi * 2 ** 32;
  }
  private bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  private text(n: number, what: string): string {
    const raw = this.bytes(n, what);
    let ascii = true;
    for (let i = 0; i < raw.length; i++) {
      if (raw[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('latin1');
    try {
      return utf8.decode(raw);
    } catch {
      return this.fail(`${what} is not valid UTF-8`);
    }
  }
  /** A newline-terminated ASCII line (GLOBAL, INT, …), without the newline. */
  private line(what: string): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) this.fail(`truncated pickle: ${what} has no end of line`);
    const raw = this.data.subarray(this.pos, end);
    this.pos = end + 1;
    if (raw.some((b) => b < 0x20 || b >= 0x7f)) this.fail(`${what} is not printable ASCII`);
    return Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('latin1');
  }
  private copyBytes(n: number, what: string): Uint8Array {
    return Uint8Array.from(this.bytes(n, what));
  }

  // -- stack --

  private push(value: PyValue): void {
    if (this.stack.length >= this.limits.maxStack) {
      this.fail(`pickle stack exceeds ${this.limits.maxStack} items`);
    }
    this.stack.push(value);
  }
  private pop(): PyValue {
    if (this.stack.length <= this.fence) this.fail('pickle stack underflow');
    return this.stack.pop()!;
  }
  private top(): PyValue {
    if (this.stack.length <= this.fence) this.fail('pickle stack underflow');
    return this.stack[this.stack.length - 1]!;
  }
  private mark(): void {
    if (this.marks.length >= this.limits.maxMarks) {
      this.fail(`pickle nests deeper than ${this.limits.maxMarks} marks`);
    }
    this.marks.push(this.stack.length);
    this.fence = this.stack.length;
  }
  private popMark(): PyValue[] {
    if (this.marks.length === 0) this.fail('pickle uses a mark that was never set');
    const at = this.marks.pop()!;
    this.fence = this.marks.length > 0 ? this.marks[this.marks.length - 1]! : 0;
    const items = this.stack.splice(at);
    this.charge(items.length);
    return items;
  }
  private memoPut(index: number, value: PyValue): void {
    const dense = index <= this.memo.length;
    const known = dense ? index < this.memo.length : this.sparseMemo.has(index);
    if (!known && ++this.memoCount > this.limits.maxMemo) {
      this.fail(`pickle memo exceeds ${this.limits.maxMemo} entries`);
    }
    if (dense) this.memo[index] = value;
    else this.sparseMemo.set(index, value);
  }
  private memoGet(index: number): PyValue {
    const value = index < this.memo.length ? this.memo[index] : this.sparseMemo.get(index);
    if (value === undefined) this.fail(`pickle memo has no entry ${index}`);
    return value;
  }

  // -- values --

  private long(n: number): number | bigint {
    if (n > this.limits.maxLongBytes)
      this.fail(`Python int of ${n} bytes (at most ${this.limits.maxLongBytes})`);
    const raw = this.bytes(n, 'Python int');
    if (n === 0) return 0;
    let value = 0n;
    for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(raw[i]!);
    if (raw[n - 1]! & 0x80) value -= 1n << BigInt(8 * n);
    return toNumberIfSafe(value);
  }

  private dictOf(target: PyValue, op: string): PyDict {
    if (!(target instanceof PyDict)) this.fail(`${op} on ${an(target)}, not a dict`);
    return target;
  }

  private setItems(dict: PyDict, items: PyValue[], op: string): void {
    if (items.length % 2 !== 0) this.fail(`${op} with an odd number of items`);
    for (let i = 0; i < items.length; i += 2) {
      const key = items[i]!;
      if (!isPyKey(key)) this.fail(`${op}: ${an(key)} cannot be a dict key`);
      dict.entries.set(key, items[i + 1]!);
    }
  }

  private appendItems(target: PyValue, items: PyValue[], op: string): void {
    if (!Array.isArray(target)) this.fail(`${op} on ${an(target)}, not a list`);
    for (const item of items) target.push(item);
  }

  private addItems(target: PySet, items: PyValue[], op: string): void {
    for (const item of items) {
      if (!isPyKey(item)) this.fail(`${op}: ${an(item)} cannot be in a set`);
      target.items.add(item);
    }
  }

  private resolveGlobal(module: string, name: string): PyGlobal {
    // protocol 2 pickles written by Python 3 name builtins the Python 2 way
    const mod = module === '__builtin__' ? 'builtins' : module === 'copy_reg' ? 'copyreg' : module;
    const impl = this.options.findGlobal(mod, name);
    if (impl === undefined) {
      this.fail(
        `refusing to load global '${short(`${mod}.${name}`, 200)}': only tensors, containers and known ` +
          `YOLOv5/torch module classes are allowed (loading never runs code from the file)`,
      );
    }
    return new PyGlobal(mod, name, impl);
  }

  private callable(value: PyValue, op: string): PyGlobal {
    if (!(value instanceof PyGlobal)) this.fail(`${op} on ${an(value)}, not an allowed global`);
    return value;
  }

  private args(value: PyValue, op: string): PyValue[] {
    if (!(value instanceof PyTuple)) this.fail(`${op} arguments are ${an(value)}, not a tuple`);
    return value.items;
  }

  private build(target: PyValue, state: PyValue): void {
    if (target instanceof PyObject) {
      const merge = (dict: PyValue): void => {
        if (dict === null) return;
        if (!(dict instanceof PyDict))
          this.fail(`BUILD state of ${target.__class__} is ${an(dict)}`);
        for (const [key, value] of dict.entries) {
          if (typeof key !== 'string')
            this.fail(`BUILD state of ${target.__class__} has a non-string attribute name`);
          target.attributes.set(key, value);
        }
      };
      // (dict, slots) pairs come from classes with __slots__
      if (state instanceof PyTuple && state.items.length === 2) {
        merge(state.items[0]!);
        merge(state.items[1]!);
      } else {
        merge(state);
      }
    } else if (target instanceof PyDict) {
      target.attributes = state;
    } else if (target instanceof PyOpaque) {
      target.build(state, this);
    } else {
      this.fail(`BUILD on ${an(target)} is not allowed`);
    }
  }

  run(): PyValue {
    const data = this.data;
    while (this.pos < data.length) {
      this.opStart = this.pos;
      const op = data[this.pos++]!;
      if (op === OP.STOP) {
        if (this.marks.length > 0) this.fail('pickle stops with a mark still open');
        return this.pop();
      }
      // each group answers whether it knew the opcode
      const known =
        this.stackOp(op) ||
        this.numberOp(op) ||
        this.textOp(op) ||
        this.containerOp(op) ||
        this.memoOp(op) ||
        this.objectOp(op);
      if (!known) this.unknownOp(op);
    }
    this.opStart = this.pos;
    return this.fail('truncated pickle: it ends without a STOP opcode');
  }

  private unknownOp(op: number): never {
    const known = REFUSED[op];
    return this.fail(
      known !== undefined
        ? `unsupported pickle opcode ${known}`
        : `unknown pickle opcode 0x${op.toString(16).padStart(2, '0')}` +
            (op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : ''),
    );
  }

  /** Opcodes for framing, marks and the stack. */
  private stackOp(op: number): boolean {
    const data = this.data;
    switch (op) {
      case OP.PROTO: {
        const version = this.u8();
        if (version > 5) this.fail(`unsupported pickle protocol ${version}`);
        return true;
      }
      case OP.FRAME: {
        const length = this.u64();
        if (length > data.length - this.pos)
          this.fail(`truncated pickle: frame of ${length} bytes`);
        return true;
      }
      case OP.MARK:
        this.mark();
        return true;
      case OP.POP:
        if (this.stack.length > this.fence) this.pop();
        else this.popMark();
        return true;
      case OP.POP_MARK:
        this.popMark();
        return true;
      case OP.DUP:
        this.push(this.top());
        return true;
      default:
        return false;
    }
  }

  /** Opcodes for numbers and booleans. */
  private numberOp(op: number): boolean {
    switch (op) {
      case OP.NONE:
        this.push(null);
        return true;
      case OP.NEWTRUE:
        this.push(true);
        return true;
      case OP.NEWFALSE:
        this.push(false);
        return true;
      case OP.BININT:
        this.push(this.i32());
        return true;
      case OP.BININT1:
        this.push(this.u8());
        return true;
      case OP.BININT2:
        this.push(this.u16());
        return true;
      case OP.LONG1:
        this.push(this.long(this.u8()));
        return true;
      case OP.LONG4: {
        const n = this.i32();
        if (n < 0) this.fail(`negative LONG4 length ${n}`);
        this.push(this.long(n));
        return true;
      }
      case OP.INT:
        this.push(this.textInt(this.line('INT'), 'INT'));
        return true;
      case OP.LONG:
        this.push(this.textInt(this.line('LONG').replace(/L$/, ''), 'LONG'));
        return true;
      case OP.BINFLOAT: {
        this.need(8, 'BINFLOAT');
        this.push(this.view.getFloat64(this.pos, false));
        this.pos += 8;
        return true;
      }
      case OP.FLOAT:
        this.push(this.textFloat(this.line('FLOAT')));
        return true;
      default:
        return false;
    }
  }

  /** Opcodes for strings and bytes. */
  private textOp(op: number): boolean {
    switch (op) {
      case OP.BINUNICODE:
        this.push(this.text(this.u32(), 'BINUNICODE'));
        return true;
      case OP.SHORT_BINUNICODE:
        this.push(this.text(this.u8(), 'SHORT_BINUNICODE'));
        return true;
      case OP.BINUNICODE8:
        this.push(this.text(this.u64(), 'BINUNICODE8'));
        return true;
      case OP.BINSTRING: {
        const n = this.i32();
        if (n < 0) this.fail(`negative BINSTRING length ${n}`);
        this.push(this.text(n, 'BINSTRING'));
        return true;
      }
      case OP.SHORT_BINSTRING:
        this.push(this.text(this.u8(), 'SHORT_BINSTRING'));
        return true;
      case OP.BINBYTES:
        this.push(this.copyBytes(this.u32(), 'BINBYTES'));
        return true;
      case OP.SHORT_BINBYTES:
        this.push(this.copyBytes(this.u8(), 'SHORT_BINBYTES'));
        return true;
      case OP.BINBYTES8:
        this.push(this.copyBytes(this.u64(), 'BINBYTES8'));
        return true;
      case OP.BYTEARRAY8:
        this.push(this.copyBytes(this.u64(), 'BYTEARRAY8'));
        return true;
      default:
        return false;
    }
  }

  /** Opcodes for tuples, lists, dicts and sets. */
  private containerOp(op: number): boolean {
    switch (op) {
      case OP.EMPTY_TUPLE:
        this.push(new PyTuple([]));
        return true;
      case OP.TUPLE1:
        this.push(new PyTuple([this.pop()]));
        return true;
      case OP.TUPLE2: {
        const b = this.pop();
        const a = this.pop();
        this.push(new PyTuple([a, b]));
        return true;
      }
      case OP.TUPLE3: {
        const c = this.pop();
        const b = this.pop();
        const a = this.pop();
        this.push(new PyTuple([a, b, c]));
        return true;
      }
      case OP.TUPLE:
        this.push(new PyTuple(this.popMark()));
        return true;
      case OP.EMPTY_LIST:
        this.push([]);
        return true;
      case OP.LIST:
        this.push(this.popMark());
        return true;
      case OP.APPEND: {
        const item = this.pop();
        this.appendItems(this.top(), [item], 'APPEND');
        return true;
      }
      case OP.APPENDS: {
        const items = this.popMark();
        this.appendItems(this.top(), items, 'APPENDS');
        return true;
      }
      case OP.EMPTY_DICT:
        this.push(new PyDict());
        return true;
      case OP.DICT: {
        const dict = new PyDict();
        this.setItems(dict, this.popMark(), 'DICT');
        this.push(dict);
        return true;
      }
      case OP.SETITEM: {
        const value = this.pop();
        const key = this.pop();
        this.setItems(this.dictOf(this.top(), 'SETITEM'), [key, value], 'SETITEM');
        return true;
      }
      case OP.SETITEMS: {
        const items = this.popMark();
        this.setItems(this.dictOf(this.top(), 'SETITEMS'), items, 'SETITEMS');
        return true;
      }
      case OP.EMPTY_SET:
        this.push(new PySet());
        return true;
      case OP.ADDITEMS: {
        const items = this.popMark();
        const target = this.top();
        if (!(target instanceof PySet)) this.fail(`ADDITEMS on ${an(target)}, not a set`);
        this.addItems(target, items, 'ADDITEMS');
        return true;
      }
      case OP.FROZENSET: {
        const set = new PySet();
        this.addItems(set, this.popMark(), 'FROZENSET');
        this.push(set);
        return true;
      }
      default:
        return false;
    }
  }

  /** Opcodes for the memo. */
  private memoOp(op: number): boolean {
    switch (op) {
      case OP.BINPUT:
        this.memoPut(this.u8(), this.top());
        return true;
      case OP.LONG_BINPUT:
        this.memoPut(this.u32(), this.top());
        return true;
      case OP.PUT:
        this.memoPut(this.textIndex(this.line('PUT')), this.top());
        return true;
      case OP.MEMOIZE:
        this.memoPut(this.memoCount, this.top());
        return true;
      case OP.BINGET:
        this.push(this.memoGet(this.u8()));
        return true;
      case OP.LONG_BINGET:
        this.push(this.memoGet(this.u32()));
        return true;
      case OP.GET:
        this.push(this.memoGet(this.textIndex(this.line('GET'))));
        return true;
      default:
        return false;
    }
  }

  /** Opcodes for globals, calls and persistent ids (tensors). */
  private objectOp(op: number): boolean {
    switch (op) {
      case OP.GLOBAL: {
        const module = this.line('GLOBAL module');
        const name = this.line('GLOBAL name');
        this.push(this.resolveGlobal(module, name));
        return true;
      }
      case OP.STACK_GLOBAL: {
        const name = this.pop();
        const module = this.pop();
        if (typeof module !== 'string' || typeof name !== 'string') {
          this.fail('STACK_GLOBAL needs two strings');
        }
        this.push(this.resolveGlobal(module, name));
        return true;
      }
      case OP.REDUCE: {
        const args = this.args(this.pop(), 'REDUCE');
        const fn = this.callable(this.pop(), 'REDUCE');
        if (fn.impl.call === undefined) this.fail(`'${fn.qualname}' cannot be called`);
        this.push(fn.impl.call(args, this));
        return true;
      }
      case OP.NEWOBJ: {
        const args = this.args(this.pop(), 'NEWOBJ');
        const cls = this.callable(this.pop(), 'NEWOBJ');
        if (cls.impl.newObject === undefined) this.fail(`'${cls.qualname}' cannot be instantiated`);
        this.push(cls.impl.newObject(args, this));
        return true;
      }
      case OP.NEWOBJ_EX: {
        const kwargs = this.pop();
        const args = this.args(this.pop(), 'NEWOBJ_EX');
        const cls = this.callable(this.pop(), 'NEWOBJ_EX');
        if (!(kwargs instanceof PyDict) || kwargs.entries.size > 0) {
          this.fail(`NEWOBJ_EX of '${cls.qualname}' with keyword arguments`);
        }
        if (cls.impl.newObject === undefined) this.fail(`'${cls.qualname}' cannot be instantiated`);
        this.push(cls.impl.newObject(args, this));
        return true;
      }
      case OP.BUILD: {
        const state = this.pop();
        this.build(this.top(), state);
        return true;
      }
      case OP.BINPERSID: {
        const pid = this.pop();
        if (this.options.persistentLoad === undefined) this.fail('unexpected persistent id');
        this.push(this.options.persistentLoad(pid, this));
        return true;
      }

      default:
        return false;
    }
  }

  private textInt(text: string, op: string): number | bigint | boolean {
    // protocol 0 spells booleans as INT 01 / 00
    if (op === 'INT' && text === '01') return true;
    if (op === 'INT' && text === '00') return false;
    if (!/^[-+]?\d{1,40}$/.test(text)) this.fail(`bad ${op} '${text.slice(0, 40)}'`);
    return toNumberIfSafe(BigInt(text));
  }

  private textFloat(text: string): number {
    if (/^[-+]?inf$/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
    if (/^[-+]?nan$/i.test(text)) return NaN;
    if (!/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(text))
      this.fail(`bad FLOAT '${text.slice(0, 40)}'`);
    return Number(text);
  }

  private textIndex(text: string): number {
    if (!/^\d{1,10}$/.test(text)) this.fail(`bad memo index '${text.slice(0, 40)}'`);
    return Number(text);
  }
}

function toNumberIfSafe(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value;
}

/** A short description of a Python value's type, for messages (never serialises the value). */
export function describe(value: unknown): string {
  if (value === null) return 'None';
  if (Array.isArray(value)) return 'list';
  if (value instanceof Uint8Array) return 'bytes';
  if (value instanceof PyObject) return value.__class__;
  if (value instanceof PyGlobal) return `global ${value.qualname}`;
  if (typeof value === 'object') {
    const typed = value as { pyType?: unknown; dtype?: unknown };
    if (typeof typed.pyType === 'string') return typed.pyType;
    if (typeof typed.dtype === 'string') return `${typed.dtype} tensor`;
    return 'object';
  }
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'boolean') return 'bool';
  return typeof value === 'string' ? 'str' : typeof value;
}

/** `describe` with its article, for messages: 'an int', 'a list', 'None'. */
export function an(value: unknown): string {
  const type = describe(value);
  return type === 'None' ? type : `${/^[aeiou]/i.test(type) ? 'an' : 'a'} ${type}`;
}

/** Runs a pickle to its STOP and returns the value it leaves. */
export function unpickle(data: Uint8Array, options: UnpickleOptions): PyValue {
  return new Unpickler(data, options).run();
}

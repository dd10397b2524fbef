/** Turns unpickled Python values into plain JS: metadata, class names and state dicts. */
import { checkpointError, short } from './error';
import { NumpyArray, NumpyDtype } from './numpy';
import { PyDict, PyGlobal, PyObject, PyOpaque, PySet, PyTuple, an, describe } from './pickle';
import type { PyValue } from './pickle';
import { isHostTensor, tensorFromStorage, toFloat32 } from './tensor';
import type { HostTensor } from './tensor';
import { StorageRef } from './torch';

/** Weights by PyTorch name (`model.0.conv.weight`), in file order. */
export type StateDict = Map<string, HostTensor>;

/**
 * Python data as JS: dicts with string keys become objects, other dicts Maps (`{0: 'person'}`),
 * tuples and sets arrays, module instances `{ __class__, ...attributes }`, tensors stay tensors.
 */
export type PlainValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | HostTensor
  | PlainValue[]
  | Map<PlainValue, PlainValue>
  | { [key: string]: PlainValue };

const MAX_DEPTH = 1000;
const MAX_MODULES = 100_000;

/** Sets a property without the `__proto__` setter, whatever the key is. */
function define(target: Record<string, PlainValue>, key: string, value: PlainValue): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Converts values of one file; shared containers convert once and stay shared. */
export class Converter {
  private readonly done = new Map<object, PlainValue>();
  private readonly active = new Set<object>();

  constructor(readonly source: string) {}

  fail(what: string): never {
    return checkpointError(this.source, what);
  }

  plain(value: PyValue, where: string, depth = 0): PlainValue {
    if (value === null || typeof value !== 'object') return value;
    if (value instanceof Uint8Array || isHostTensor(value)) return value;
    const seen = this.done.get(value);
    if (seen !== undefined) return seen;
    if (depth > MAX_DEPTH) this.fail(`${where} nests deeper than ${MAX_DEPTH} levels`);
    if (this.active.has(value)) this.fail(`${where} contains itself`);
    this.active.add(value);
    const out = this.convert(value, where, depth);
    this.active.delete(value);
    this.done.set(value, out);
    return out;
  }

  private convert(
    value: Exclude<PyValue, null | boolean | number | bigint | string | Uint8Array | HostTensor>,
    where: string,
    depth: number,
  ): PlainValue {
    const next = depth + 1;
    if (Array.isArray(value)) return value.map((v, i) => this.plain(v, `${where}[${i}]`, next));
    if (value instanceof PyTuple)
      return value.items.map((v, i) => this.plain(v, `${where}[${i}]`, next));
    if (value instanceof PySet) return [...value.items].map((v) => this.plain(v, where, next));
    if (value instanceof PyDict) {
      if ([...value.entries.keys()].every((k) => typeof k === 'string')) {
        const out: Record<string, PlainValue> = {};
        for (const [k, v] of value.entries)
          define(out, k as string, this.plain(v, `${where}.${short(k)}`, next));
        return out;
      }
      const out = new Map<PlainValue, PlainValue>();
      for (const [k, v] of value.entries) {
        out.set(this.plain(k, where, next), this.plain(v, `${where}[${short(k)}]`, next));
      }
      return out;
    }
    if (value instanceof PyObject) {
      const out: Record<string, PlainValue> = {};
      define(out, '__class__', value.__class__);
      for (const [k, v] of value.attributes)
        define(out, k, this.plain(v, `${where}.${short(k)}`, next));
      return out;
    }
    if (value instanceof PyGlobal) return value.qualname;
    if (value instanceof NumpyArray) {
      if (value.tensor === undefined) this.fail(`${where} is a numpy array without data`);
      return value.tensor;
    }
    if (value instanceof NumpyDtype) return value.dtype;
    if (value instanceof StorageRef) {
      const s = value.storage;
      return tensorFromStorage(s, 0, [s.numel], [1], (what) => this.fail(what));
    }
    if (value instanceof PyOpaque) return this.fail(`${where} is a ${value.pyType}`);
    return this.fail(`${where} is ${an(value)}`);
  }

  /** A dict with string keys as a plain object; undefined when absent or None. */
  record(value: PyValue | undefined, where: string): Record<string, PlainValue> | undefined {
    if (value === undefined || value === null) return undefined;
    const out = this.plain(value, where);
    if (
      out === null ||
      typeof out !== 'object' ||
      Array.isArray(out) ||
      out instanceof Map ||
      isHostTensor(out) ||
      out instanceof Uint8Array
    ) {
      this.fail(`${where} is ${an(value)}, not a dict with string keys`);
    }
    return out as Record<string, PlainValue>;
  }

  number(value: PyValue | undefined, where: string): number | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'number') return value;
    // a numpy array or tensor of one value (YOLOv5 keeps best_fitness as a 1-element array)
    const plain = this.plain(value, where);
    if (isHostTensor(plain) && plain.data.length === 1) return toFloat32(plain)[0]!;
    return this.fail(`${where} is ${an(value)}, not a number`);
  }

  string(value: PyValue | undefined, where: string): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') this.fail(`${where} is ${an(value)}, not a string`);
    return value;
  }

  /** Class names from `['a', 'b']` or `{0: 'a', 1: 'b'}` (keys 0…n-1 in any order). */
  names(value: PyValue | undefined, where: string): string[] | undefined {
    if (value === undefined || value === null) return undefined;
    const items = Array.isArray(value) ? value : value instanceof PyTuple ? value.items : undefined;
    if (items !== undefined) {
      return items.map((name, i) => {
        if (typeof name !== 'string') this.fail(`${where}[${i}] is ${an(name)}, not a string`);
        return name;
      });
    }
    if (!(value instanceof PyDict))
      return this.fail(`${where} is ${an(value)}, not a list or dict`);
    const names = new Array<string>(value.entries.size);
    for (const [key, name] of value.entries) {
      const id = typeof key === 'string' && /^\d+$/.test(key) ? Number(key) : key;
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= names.length) {
        this.fail(
          `${where} has key ${describe(key)} ${short(key)}; class ids must be 0…${names.length - 1}`,
        );
      }
      if (typeof name !== 'string') this.fail(`${where}[${id}] is ${an(name)}, not a string`);
      if (names[id] !== undefined) this.fail(`${where} names class ${id} twice`);
      names[id] = name;
    }
    return names;
  }

  numbers(value: PyValue | undefined, where: string): number[] | undefined {
    if (value === undefined || value === null) return undefined;
    const plain = this.plain(value, where);
    if (isHostTensor(plain)) return Array.from(toFloat32(plain));
    if (Array.isArray(plain) && plain.every((v) => typeof v === 'number')) return plain as number[];
    return this.fail(`${where} is ${an(value)}, not a list of numbers`);
  }

  /** A state dict saved as a dict: every key a string, every value a tensor. */
  stateDict(value: PyValue | undefined, where: string): StateDict | undefined {
    if (!(value instanceof PyDict) || value.entries.size === 0) return undefined;
    const state: StateDict = new Map();
    for (const [key, tensor] of value.entries) {
      if (typeof key !== 'string' || !isHostTensor(tensor)) return undefined;
      state.set(key, tensor);
    }
    return state;
  }

  /**
   * The state dict of an nn.Module bag, named as `module.state_dict()` names it: per module its own
   * parameters, then its persistent buffers, then its children, depth first.
   */
  moduleState(root: PyObject, where: string): StateDict {
    const state: StateDict = new Map();
    const active = new Set<PyObject>();
    let visited = 0;
    const walk = (module: PyObject, prefix: string, depth: number): void => {
      if (depth > MAX_DEPTH) this.fail(`${where}: modules nest deeper than ${MAX_DEPTH}`);
      if (++visited > MAX_MODULES) this.fail(`${where}: more than ${MAX_MODULES} modules`);
      if (active.has(module)) this.fail(`${where}: module '${prefix}' contains itself`);
      active.add(module);
      const named = (attr: string): PyDict => {
        const dict = module.get(attr);
        if (!(dict instanceof PyDict)) {
          this.fail(
            `${where}: ${module.__class__} at '${prefix || '(root)'}' has no ${attr} dict (not an nn.Module?)`,
          );
        }
        return dict;
      };
      const skip = module.get('_non_persistent_buffers_set');
      const nonPersistent = skip instanceof PySet ? skip.items : new Set();
      const add = (key: unknown, tensor: PyValue, kind: string): void => {
        if (typeof key !== 'string')
          this.fail(`${where}: ${kind} name at '${prefix}' is ${an(key)}`);
        if (tensor === null || nonPersistent.has(key)) return;
        if (!isHostTensor(tensor))
          this.fail(`${where}: ${kind} '${prefix}${key}' is ${an(tensor)}, not a tensor`);
        if (state.has(prefix + key)) this.fail(`${where}: '${prefix}${key}' appears twice`);
        state.set(prefix + key, tensor);
      };
      for (const [key, tensor] of named('_parameters').entries) add(key, tensor, 'parameter');
      for (const [key, tensor] of named('_buffers').entries) add(key, tensor, 'buffer');
      for (const [key, child] of named('_modules').entries) {
        if (typeof key !== 'string')
          this.fail(`${where}: child module name at '${prefix}' is ${an(key)}`);
        if (child === null) continue;
        if (!(child instanceof PyObject))
          this.fail(`${where}: module '${prefix}${key}' is ${an(child)}`);
        walk(child, `${prefix}${key}.`, depth + 1);
      }
      active.delete(module);
    };
    walk(root, '', 0);
    return state;
  }
}

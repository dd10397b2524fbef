/// <reference types="node" preserve="true" />
/**
 * An ONNX graph under construction and its serialisation as a ModelProto. Field numbers and enum
 * values are those of onnx.proto (IR version 7/8); tensors are stored as little-endian raw_data.
 */
import * as os from 'node:os';
import { ProtoWriter } from '../report/protobuf';

/** TensorProto.DataType values used here. */
export const FLOAT = 1;
export const INT64 = 7;

/** AttributeProto.AttributeType values used here. */
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

export type AttrValue = number | string | number[] | { float: number };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs: Record<string, AttrValue>;
}

export interface OnnxInitializer {
  name: string;
  dims: number[];
  dataType: typeof FLOAT | typeof INT64;
  raw: Uint8Array;
}

/** A graph input/output: element type and dims (a number, or a name for a dynamic dimension). */
export interface OnnxValueInfo {
  name: string;
  dataType: number;
  dims: (number | string)[];
}

/** The IR version the ONNX release that introduced an opset wrote (onnx's version table). */
export function irVersionFor(opset: number): number {
  return opset <= 14 ? 7 : 8;
}

const bigEndian = os.endianness() === 'BE';

function littleEndianBytes(data: Float32Array | BigInt64Array): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!bigEndian) return bytes;
  const swapped = new Uint8Array(bytes);
  const w = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < swapped.length; i += w) swapped.subarray(i, i + w).reverse();
  return swapped;
}

export class OnnxGraph {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxInitializer[] = [];
  readonly inputs: OnnxValueInfo[] = [];
  readonly outputs: OnnxValueInfo[] = [];
  #names = new Set<string>();
  #constants = new Map<string, string>();

  /** A value name not used before, derived from `hint`. */
  unique(hint: string): string {
    let name = hint;
    for (let n = 1; this.#names.has(name); n++) name = `${hint}_${n}`;
    this.#names.add(name);
    return name;
  }

  /** Adds a node with one output and returns the output's name. */
  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, hint = op): string {
    return this.nodeMulti(op, inputs, 1, attrs, hint)[0]!;
  }

  nodeMulti(
    op: string,
    inputs: string[],
    outputCount: number,
    attrs: Record<string, AttrValue> = {},
    hint = op,
  ): string[] {
    const name = this.unique(`/${hint}/${op}`);
    const outputs = Array.from({ length: outputCount }, (_, i) =>
      this.unique(`${name}_output_${i}`),
    );
    this.nodes.push({ op, inputs, outputs, name, attrs });
    return outputs;
  }

  /** A float32 initializer (a weight) under a given name. */
  weight(name: string, dims: number[], data: Float32Array): string {
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected)
      throw new RangeError(`${name}: ${data.length} values for dims [${dims.join(', ')}]`);
    const unique = this.unique(name);
    this.initializers.push({ name: unique, dims, dataType: FLOAT, raw: littleEndianBytes(data) });
    return unique;
  }

  /** A float32 constant, shared between nodes that use the same values. */
  floats(values: ArrayLike<number>, dims: number[] = [values.length], hint = 'const'): string {
    const data = Float32Array.from(values as ArrayLike<number>);
    const key = `f${dims.join('x')}:${Array.from(data).join(',')}`;
    const known = this.#constants.get(key);
    if (known !== undefined && data.length <= 64) return known;
    const name = this.weight(hint, dims, data);
    if (data.length <= 64) this.#constants.set(key, name);
    return name;
  }

  /** An int64 constant (shapes, slice bounds); `dims` [] makes a scalar. */
  ints(
    values: readonly (number | bigint)[],
    dims: number[] = [values.length],
    hint = 'const',
  ): string {
    const key = `i${dims.join('x')}:${values.join(',')}`;
    const known = this.#constants.get(key);
    if (known !== undefined) return known;
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    const name = this.unique(hint);
    this.initializers.push({ name, dims, dataType: INT64, raw: littleEndianBytes(data) });
    this.#constants.set(key, name);
    return name;
  }

  /** Serialises the graph as an ONNX ModelProto. */
  toModelProto(opts: {
    graphName: string;
    opset: number;
    producer: string;
    producerVersion: string;
    docString?: string;
    metadata?: Record<string, string>;
  }): Buffer {
    const graph = new ProtoWriter();
    // GraphProto: node = 1, name = 2, initializer = 5, doc_string = 10, input = 11, output = 12.
    for (const n of this.nodes) graph.message(1, encodeNode(n));
    graph.string(2, opts.graphName);
    for (const t of this.initializers) graph.message(5, encodeTensor(t));
    for (const v of this.inputs) graph.message(11, encodeValueInfo(v));
    for (const v of this.outputs) graph.message(12, encodeValueInfo(v));

    const model = new ProtoWriter();
    // ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, model_version = 5,
    // doc_string = 6, graph = 7, opset_import = 8, metadata_props = 14.
    model.int(1, irVersionFor(opts.opset));
    model.string(2, opts.producer);
    model.string(3, opts.producerVersion);
    model.int(5, 1);
    if (opts.docString) model.string(6, opts.docString);
    model.message(7, graph);
    // OperatorSetIdProto: domain = 1 ("" is the default ai.onnx domain), version = 2.
    model.message(8, new ProtoWriter().string(1, '').int(2, opts.opset));
    for (const [key, value] of Object.entries(opts.metadata ?? {})) {
      // StringStringEntryProto: key = 1, value = 2.
      model.message(14, new ProtoWriter().string(1, key).string(2, value));
    }
    return model.finish();
  }
}

function encodeNode(n: OnnxNode): ProtoWriter {
  // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.op);
  for (const [name, value] of Object.entries(n.attrs)) w.message(5, encodeAttribute(name, value));
  return w;
}

function encodeAttribute(name: string, value: AttrValue): ProtoWriter {
  // AttributeProto: name = 1, f = 2, i = 3, s = 4, ints = 8, type = 20.
  const w = new ProtoWriter().string(1, name);
  if (typeof value === 'string') {
    w.string(4, value).int(20, ATTR_STRING);
  } else if (typeof value === 'number') {
    w.int(3, value).int(20, ATTR_INT);
  } else if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    w.int(20, ATTR_INTS);
  } else {
    w.float(2, value.float).int(20, ATTR_FLOAT);
  }
  return w;
}

function encodeTensor(t: OnnxInitializer): ProtoWriter {
  // TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9.
  const w = new ProtoWriter();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, t.raw);
  return w;
}

function encodeValueInfo(v: OnnxValueInfo): ProtoWriter {
  // ValueInfoProto: name = 1, type = 2. TypeProto: tensor_type = 1. TypeProto.Tensor: elem_type = 1,
  // shape = 2. TensorShapeProto: dim = 1. Dimension: dim_value = 1, dim_param = 2.
  const shape = new ProtoWriter();
  for (const d of v.dims) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, v.dataType).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, v.name).message(2, type);
}

/// <reference types="node" preserve="true" />
/**
 * A minimal protocol-buffers writer: varints, fixed32 floats, fixed64 doubles and length-delimited
 * fields — all the ONNX and TensorBoard event formats need — and a reader for the same wire types. Messages are built bottom-up as lists of byte chunks, so large weight
 * buffers are referenced, not copied, until the file is written.
 */

/** Wire types of the protobuf encoding. */
const VARINT = 0;
const FIXED64 = 1;
const FIXED32 = 5;
const LENGTH_DELIMITED = 2;

export class ProtoWriter {
  readonly chunks: Uint8Array[] = [];
  length = 0;
  #scratch: number[] = [];

  #flush(): void {
    if (this.#scratch.length === 0) return;
    const bytes = Uint8Array.from(this.#scratch);
    this.chunks.push(bytes);
    this.length += bytes.length;
    this.#scratch = [];
  }

  #varint(value: number | bigint): void {
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) {
      let v = value;
      while (v >= 0x80) {
        this.#scratch.push((v % 0x80) | 0x80);
        v = Math.floor(v / 0x80);
      }
      this.#scratch.push(v);
      return;
    }
    // Negative int64 values are written as their 64-bit two's complement (10 bytes).
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.#scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#scratch.push(Number(v));
  }

  #tag(field: number, wireType: number): void {
    this.#varint(field * 8 + wireType);
  }

  /** An int32/int64/enum/bool field. */
  int(field: number, value: number | bigint): this {
    if (typeof value === 'number' && !Number.isInteger(value))
      throw new RangeError(`protobuf field ${field}: ${value} is not an integer`);
    this.#tag(field, VARINT);
    this.#varint(value);
    return this;
  }

  /** A float (fixed32) field. */
  float(field: number, value: number): this {
    this.#tag(field, FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.#scratch.push(...b);
    return this;
  }

  /** A double (fixed64) field. */
  double(field: number, value: number): this {
    this.#tag(field, FIXED64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.#scratch.push(...b);
    return this;
  }

  /** A string field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** A bytes field; the data is referenced, not copied. */
  bytes(field: number, data: Uint8Array): this {
    this.#tag(field, LENGTH_DELIMITED);
    this.#varint(data.length);
    this.#flush();
    if (data.length > 0) {
      this.chunks.push(data);
      this.length += data.length;
    }
    return this;
  }

  /** An embedded message field. */
  message(field: number, sub: ProtoWriter): this {
    sub.#flush();
    this.#tag(field, LENGTH_DELIMITED);
    this.#varint(sub.length);
    this.#flush();
    for (const c of sub.chunks) this.chunks.push(c);
    this.length += sub.length;
    return this;
  }

  /** The finished message as one buffer. */
  finish(): Buffer {
    this.#flush();
    return Buffer.concat(this.chunks, this.length);
  }
}

/** One decoded field: varints as bigint, fixed32/fixed64 as their raw bytes, the rest as bytes. */
export interface ProtoField {
  field: number;
  wireType: number;
  varint?: bigint;
  bytes?: Uint8Array;
}

/** Splits a message into its fields (no schema); throws RangeError on a malformed message. */
export function readProtoFields(data: Uint8Array): ProtoField[] {
  const fields: ProtoField[] = [];
  let at = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (at >= data.length || shift > 63n) throw new RangeError('protobuf: truncated varint');
      const b = data[at++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  const take = (n: number): Uint8Array => {
    if (at + n > data.length) throw new RangeError('protobuf: field runs past the message');
    const out = data.subarray(at, at + n);
    at += n;
    return out;
  };
  while (at < data.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (wireType === VARINT) fields.push({ field, wireType, varint: varint() });
    else if (wireType === FIXED64) fields.push({ field, wireType, bytes: take(8) });
    else if (wireType === FIXED32) fields.push({ field, wireType, bytes: take(4) });
    else if (wireType === LENGTH_DELIMITED)
      fields.push({ field, wireType, bytes: take(Number(varint())) });
    else throw new RangeError(`protobuf: unsupported wire type ${wireType}`);
  }
  return fields;
}

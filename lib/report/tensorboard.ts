/**
 * TensorBoard event files: TFRecords (uint64 length, masked CRC32C of it, an Event protobuf,
 * masked CRC32C of that) holding first the `brain.Event:2` version record, then per epoch one
 * Event with a scalar Summary value per tag; optionally PNG image summaries.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Yolo5Error } from '../errors';
import { maskedCrc32c } from './crc32c';
import { ProtoWriter, readProtoFields } from './protobuf';

export const FILE_VERSION = 'brain.Event:2';

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([header, data, footer]);
}

/** Appends event records to `events.out.tfevents.<time>.<host>.<pid>` in a run folder. */
export class EventWriter {
  readonly file: string;
  #fd: number | undefined;

  constructor(dir: string, now = Date.now()) {
    const name = `events.out.tfevents.${Math.floor(now / 1000)}.${os.hostname()}.${process.pid}`;
    this.file = path.join(dir, name);
    this.#fd = fs.openSync(this.file, 'a');
    this.#write(new ProtoWriter().double(1, now / 1000).string(3, FILE_VERSION));
  }

  #write(event: ProtoWriter): void {
    if (this.#fd === undefined) throw new Yolo5Error('E_FILE', `${this.file} is closed`);
    fs.writeSync(this.#fd, tfRecord(event.finish()));
  }

  #event(step: number, values: ProtoWriter[], wallTime: number): void {
    const summary = new ProtoWriter();
    for (const v of values) summary.message(1, v);
    this.#write(new ProtoWriter().double(1, wallTime).int(2, step).message(5, summary));
  }

  /** One Event holding a scalar per tag (non-finite values are written as they are). */
  scalars(step: number, values: Readonly<Record<string, number>>, wallTime = Date.now() / 1000) {
    const list = Object.entries(values).map(([tag, v]) =>
      new ProtoWriter().string(1, tag).float(2, v),
    );
    this.#event(step, list, wallTime);
  }

  /** An image summary (PNG or JPEG bytes) under `tag`. */
  image(step: number, tag: string, image: { width: number; height: number; encoded: Uint8Array }) {
    const img = new ProtoWriter()
      .int(1, image.height)
      .int(2, image.width)
      .int(3, 3)
      .bytes(4, image.encoded);
    this.#event(step, [new ProtoWriter().string(1, tag).message(4, img)], Date.now() / 1000);
  }

  close(): void {
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
  }
}

export interface EventValue {
  tag: string;
  simpleValue?: number;
  image?: { width: number; height: number; encoded: Uint8Array };
}

export interface EventRecord {
  wallTime: number;
  step: number;
  fileVersion?: string;
  values: EventValue[];
}

function bad(file: string, at: number, what: string): never {
  throw new Yolo5Error('E_FILE', `${file}: record at byte ${at}: ${what}`, { file });
}

function decodeValue(bytes: Uint8Array): EventValue {
  const v: EventValue = { tag: '' };
  for (const f of readProtoFields(bytes)) {
    if (f.field === 1) v.tag = Buffer.from(f.bytes!).toString('utf8');
    else if (f.field === 2) v.simpleValue = Buffer.from(f.bytes!).readFloatLE(0);
    else if (f.field === 4) {
      const img: NonNullable<EventValue['image']> = {
        width: 0,
        height: 0,
        encoded: new Uint8Array(),
      };
      for (const g of readProtoFields(f.bytes!)) {
        if (g.field === 1) img.height = Number(g.varint);
        else if (g.field === 2) img.width = Number(g.varint);
        else if (g.field === 4) img.encoded = g.bytes!;
      }
      v.image = img;
    }
  }
  return v;
}

function decodeEvent(data: Uint8Array): EventRecord {
  const e: EventRecord = { wallTime: 0, step: 0, values: [] };
  for (const f of readProtoFields(data)) {
    if (f.field === 1) e.wallTime = Buffer.from(f.bytes!).readDoubleLE(0);
    else if (f.field === 2) e.step = Number(BigInt.asIntN(64, f.varint!));
    else if (f.field === 3) e.fileVersion = Buffer.from(f.bytes!).toString('utf8');
    else if (f.field === 5)
      for (const s of readProtoFields(f.bytes!))
        if (s.field === 1) e.values.push(decodeValue(s.bytes!));
  }
  return e;
}

/** Reads an event file back, checking every record's length and data CRC. */
export function readEvents(file: string): EventRecord[] {
  const buf = fs.readFileSync(file);
  const out: EventRecord[] = [];
  for (let at = 0; at < buf.length;) {
    if (at + 12 > buf.length) bad(file, at, 'truncated header');
    if (buf.readUInt32LE(at + 8) !== maskedCrc32c(buf.subarray(at, at + 8)))
      bad(file, at, 'length CRC does not match');
    const n = Number(buf.readBigUInt64LE(at));
    if (at + 12 + n + 4 > buf.length) bad(file, at, `length ${n} runs past the end`);
    const data = buf.subarray(at + 12, at + 12 + n);
    if (buf.readUInt32LE(at + 12 + n) !== maskedCrc32c(data))
      bad(file, at, 'data CRC does not match');
    try {
      out.push(decodeEvent(data));
    } catch (err) {
      bad(file, at, (err as Error).message);
    }
    at += 12 + n + 4;
  }
  return out;
}

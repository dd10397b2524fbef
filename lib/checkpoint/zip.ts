/// <reference types="node" preserve="true" />
/** Zip archives as PyTorch writes them: stored or deflated entries, zip64 when large, aligned data. */
import * as zlib from 'node:zlib';
import { checkpointError } from './error';

// ---- CRC-32 ----------------------------------------------------------------------------------

/** CRC-32 (IEEE 802.3) of `data`, continuing `crc`: zlib's, in every Node the engines field allows. */
export function crc32(data: Uint8Array, crc = 0): number {
  return zlib.crc32(data, crc) >>> 0;
}

// ---- reading ---------------------------------------------------------------------------------

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
/** Deflate cannot expand data by more than about 1032:1; a larger claim is a lie. */
const MAX_DEFLATE_RATIO = 1100;

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localOffset: number;
  dataOffset: number;
}

export interface ZipLimits {
  maxEntries: number;
  /** The largest entry we inflate or hand out, in bytes. */
  maxEntryBytes: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = { maxEntries: 1_000_000, maxEntryBytes: 2 ** 32 };

/** Little-endian field reads that fail with a checkpoint error instead of reading past the end. */
class Fields {
  private readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    private readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(offset: number, length: number, what: string): void {
    if (offset < 0 || length < 0 || offset + length > this.bytes.length) {
      checkpointError(
        this.source,
        `truncated or corrupt zip: ${what} at byte ${offset} (+${length}) lies beyond the ` +
          `file's ${this.bytes.length} bytes`,
      );
    }
  }
  u16(offset: number): number {
    return this.view.getUint16(offset, true);
  }
  u32(offset: number): number {
    return this.view.getUint32(offset, true);
  }
  /** A 64-bit size or offset; anything beyond 2^53 cannot be real. */
  u64(offset: number, what: string): number {
    const value = this.u32(offset) + this.u32(offset + 4) * 2 ** 32;
    if (!Number.isSafeInteger(value))
      checkpointError(this.source, `zip64 ${what} ${value} is absurd`);
    return value;
  }
}

/** A parsed zip archive over an in-memory file; entries are checked when read. */
export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();
  private readonly fields: Fields;

  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
    readonly limits: ZipLimits = DEFAULT_ZIP_LIMITS,
  ) {
    this.fields = new Fields(bytes, source);
    this.parse();
  }

  private fail(what: string): never {
    return checkpointError(this.source, what);
  }

  private parse(): void {
    const f = this.fields;
    const eocd = this.findEndOfCentralDirectory();
    const disk = f.u16(eocd + 4);
    const cdDisk = f.u16(eocd + 6);
    if ((disk !== 0 && disk !== U16_MAX) || (cdDisk !== 0 && cdDisk !== U16_MAX)) {
      this.fail('multi-disk zip archives are not supported');
    }
    let count = f.u16(eocd + 10);
    let cdSize = f.u32(eocd + 12);
    let cdOffset = f.u32(eocd + 16);
    let cdEnd = eocd;
    if (eocd >= 20 && f.u32(eocd - 20) === SIG_EOCD64_LOCATOR) {
      const at = f.u64(eocd - 20 + 8, 'end-of-directory offset');
      f.need(at, 56, 'zip64 end-of-central-directory record');
      if (f.u32(at) !== SIG_EOCD64)
        this.fail(`no zip64 end-of-central-directory record at byte ${at}`);
      if (at + 56 > eocd - 20)
        this.fail('zip64 end-of-central-directory record overlaps its locator');
      if (count === U16_MAX) count = f.u64(at + 32, 'entry count');
      if (cdSize === U32_MAX) cdSize = f.u64(at + 40, 'central directory size');
      if (cdOffset === U32_MAX) cdOffset = f.u64(at + 48, 'central directory offset');
      cdEnd = at;
    }
    if (count > this.limits.maxEntries) {
      this.fail(`zip claims ${count} entries (at most ${this.limits.maxEntries})`);
    }
    if (cdOffset + cdSize > cdEnd) {
      this.fail(
        `truncated or corrupt zip: central directory at byte ${cdOffset} (+${cdSize}) runs past ` +
          `its end record at byte ${cdEnd}`,
      );
    }
    if (count * 46 > cdSize) this.fail(`zip claims ${count} entries in a ${cdSize}-byte directory`);
    let at = cdOffset;
    for (let i = 0; i < count; i++) at = this.parseCentralEntry(at, cdOffset + cdSize, cdOffset);
  }

  private findEndOfCentralDirectory(): number {
    const f = this.fields;
    const n = this.bytes.length;
    if (n < 22) this.fail(`not a zip checkpoint: only ${n} bytes`);
    const lowest = Math.max(0, n - 22 - U16_MAX);
    for (let at = n - 22; at >= lowest; at--) {
      if (f.u32(at) === SIG_EOCD && at + 22 + f.u16(at + 20) <= n) return at;
    }
    if (this.bytes[0] === 0x80 && this.bytes[1] !== undefined && this.bytes[1] <= 5) {
      this.fail('a legacy (pre-1.6, non-zip) torch.save file; re-save it with a current torch');
    }
    return this.fail('not a zip checkpoint (no end-of-central-directory record; truncated?)');
  }

  /** Parses one central directory record at `at`; returns where the next one starts. */
  private parseCentralEntry(at: number, cdEnd: number, dataEnd: number): number {
    const f = this.fields;
    if (at + 46 > cdEnd || f.u32(at) !== SIG_CENTRAL) {
      this.fail(`corrupt zip: no central directory record at byte ${at}`);
    }
    const flags = f.u16(at + 8);
    const method = f.u16(at + 10);
    const crc = f.u32(at + 16);
    let compressedSize = f.u32(at + 20);
    let size = f.u32(at + 24);
    const nameLength = f.u16(at + 28);
    const extraLength = f.u16(at + 30);
    const commentLength = f.u16(at + 32);
    let localOffset = f.u32(at + 42);
    const next = at + 46 + nameLength + extraLength + commentLength;
    if (next > cdEnd)
      this.fail(`corrupt zip: central directory record at byte ${at} overruns the directory`);
    const name = decodeName(this.bytes.subarray(at + 46, at + 46 + nameLength), this.source);
    const where = `zip entry '${name}'`;
    // zip64 extra field: 64-bit values for exactly the fields saturated above, in this order
    for (let e = at + 46 + nameLength, end = e + extraLength; e + 4 <= end;) {
      const id = f.u16(e);
      const length = f.u16(e + 2);
      if (e + 4 + length > end) this.fail(`${where}: extra field overruns its record`);
      if (id === 1) {
        let p = e + 4;
        const take = (what: string): number => {
          if (p + 8 > e + 4 + length) this.fail(`${where}: zip64 field is missing its ${what}`);
          const value = f.u64(p, what);
          p += 8;
          return value;
        };
        if (size === U32_MAX) size = take('size');
        if (compressedSize === U32_MAX) compressedSize = take('compressed size');
        if (localOffset === U32_MAX) localOffset = take('local header offset');
      }
      e += 4 + length;
    }
    if (flags & 1) this.fail(`${where} is encrypted`);
    if (method !== 0 && method !== 8)
      this.fail(`${where} uses compression method ${method} (only stored and deflate)`);
    if (method === 0 && compressedSize !== size) {
      this.fail(`${where} is stored but its sizes differ (${compressedSize} vs ${size})`);
    }
    if (size > this.limits.maxEntryBytes)
      this.fail(`${where} claims ${size} bytes (at most ${this.limits.maxEntryBytes})`);
    if (method === 8 && size > compressedSize * MAX_DEFLATE_RATIO + 1024) {
      this.fail(`${where} claims ${size} bytes from ${compressedSize} compressed bytes`);
    }
    f.need(localOffset, 30, `${where} local header`);
    if (f.u32(localOffset) !== SIG_LOCAL)
      this.fail(`${where}: no local header at byte ${localOffset}`);
    const localName = localOffset + 30;
    const dataOffset = localName + f.u16(localOffset + 26) + f.u16(localOffset + 28);
    if (
      !sameBytes(this.bytes, localName, at + 46, nameLength) ||
      f.u16(localOffset + 26) !== nameLength
    ) {
      this.fail(`${where}: local header names a different file`);
    }
    if (dataOffset + compressedSize > dataEnd) {
      this.fail(
        `truncated or corrupt zip: ${where} data at byte ${dataOffset} (+${compressedSize}) runs ` +
          `past the central directory at byte ${dataEnd}`,
      );
    }
    if (this.entries.has(name)) this.fail(`zip holds '${name}' twice`);
    this.entries.set(name, {
      name,
      method,
      crc32: crc,
      compressedSize,
      size,
      localOffset,
      dataOffset,
    });
    return next;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The entry's bytes, inflated and checked against its size and CRC-32. Stored data is not copied. */
  read(name: string): Uint8Array {
    const entry = this.entries.get(name);
    if (entry === undefined) return this.fail(`zip has no entry '${name}'`);
    const raw = this.bytes.subarray(entry.dataOffset, entry.dataOffset + entry.compressedSize);
    let data: Uint8Array = raw;
    if (entry.method === 8) {
      try {
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (err) {
        const why =
          (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE'
            ? `inflates to more than its declared ${entry.size} bytes`
            : `does not inflate (${(err as Error).message})`;
        return this.fail(`zip entry '${name}' ${why}`);
      }
      if (data.length !== entry.size) {
        this.fail(
          `zip entry '${name}' inflates to ${data.length} bytes, not the declared ${entry.size}`,
        );
      }
    }
    const actual = crc32(data);
    if (actual !== entry.crc32) {
      this.fail(
        `zip entry '${name}' is corrupt: CRC-32 ${hex(actual)} does not match the recorded ${hex(entry.crc32)}`,
      );
    }
    return data;
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function sameBytes(bytes: Uint8Array, a: number, b: number, length: number): boolean {
  if (a + length > bytes.length) return false;
  for (let i = 0; i < length; i++) if (bytes[a + i] !== bytes[b + i]) return false;
  return true;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(bytes: Uint8Array, source: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    return checkpointError(source, 'zip entry name is not valid UTF-8');
  }
}

// ---- writing ---------------------------------------------------------------------------------

export interface ZipWriterOptions {
  /** Data of stored entries starts at a multiple of this (PyTorch mmaps storages at 64). */
  align?: number;
  /** Writes zip64 records even for small archives (tests the reader's zip64 paths). */
  forceZip64?: boolean;
}

export interface ZipAddOptions {
  /** Deflates the entry instead of storing it. */
  deflate?: boolean;
  /** The CRC-32 of `data` when the caller already knows it. */
  crc32?: number;
}

interface WrittenEntry {
  name: Uint8Array;
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

/** Writes a zip archive front to back into `sink`; nothing is kept but the directory. */
export class ZipWriter {
  private offset = 0;
  private readonly written: WrittenEntry[] = [];
  private readonly align: number;
  private readonly forceZip64: boolean;

  constructor(
    private readonly sink: (chunk: Uint8Array) => void,
    options: ZipWriterOptions = {},
  ) {
    this.align = options.align ?? 64;
    this.forceZip64 = options.forceZip64 ?? false;
  }

  private emit(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.sink(chunk);
    this.offset += chunk.length;
  }

  add(name: string, data: Uint8Array, options: ZipAddOptions = {}): void {
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = options.crc32 ?? crc32(data);
    const body = options.deflate ? zlib.deflateRawSync(data) : data;
    const zip64 = this.forceZip64 || data.length >= U32_MAX || body.length >= U32_MAX;
    const zip64Extra = zip64 ? 20 : 0;
    const base = this.offset + 30 + nameBytes.length + zip64Extra;
    const padding =
      base % this.align === 0 ? 0 : 4 + ((this.align - ((base + 4) % this.align)) % this.align);
    const header = Buffer.alloc(30 + nameBytes.length + zip64Extra + padding);
    header.writeUInt32LE(SIG_LOCAL, 0);
    header.writeUInt16LE(zip64 ? 45 : 20, 4);
    header.writeUInt16LE(nonAscii(nameBytes) ? 0x800 : 0, 6);
    header.writeUInt16LE(options.deflate ? 8 : 0, 8);
    header.writeUInt16LE(0, 10);
    header.writeUInt16LE(0x21, 12); // 1980-01-01: reproducible bytes
    header.writeUInt32LE(crc, 14);
    header.writeUInt32LE(zip64 ? U32_MAX : body.length, 18);
    header.writeUInt32LE(zip64 ? U32_MAX : data.length, 22);
    header.writeUInt16LE(nameBytes.length, 26);
    header.writeUInt16LE(zip64Extra + padding, 28);
    nameBytes.copy(header, 30);
    let e = 30 + nameBytes.length;
    if (zip64) {
      header.writeUInt16LE(1, e);
      header.writeUInt16LE(16, e + 2);
      writeU64(header, e + 4, data.length);
      writeU64(header, e + 12, body.length);
      e += 20;
    }
    if (padding > 0) {
      header.writeUInt16LE(0x4246, e); // 'FB', the id PyTorch gives its alignment padding
      header.writeUInt16LE(padding - 4, e + 2);
      header.fill(0x5a, e + 4, e + padding);
    }
    const localOffset = this.offset;
    this.emit(header);
    this.emit(body);
    this.written.push({
      name: nameBytes,
      method: options.deflate ? 8 : 0,
      crc32: crc,
      compressedSize: body.length,
      size: data.length,
      localOffset,
    });
  }

  /** Writes the central directory and end records; the archive is complete afterwards. */
  finish(): void {
    const cdOffset = this.offset;
    for (const w of this.written) {
      const zip64 =
        this.forceZip64 ||
        w.size >= U32_MAX ||
        w.compressedSize >= U32_MAX ||
        w.localOffset >= U32_MAX;
      const extra = zip64 ? 28 : 0;
      const record = Buffer.alloc(46 + w.name.length + extra);
      record.writeUInt32LE(SIG_CENTRAL, 0);
      record.writeUInt16LE(zip64 ? 45 : 20, 4);
      record.writeUInt16LE(zip64 ? 45 : 20, 6);
      record.writeUInt16LE(nonAscii(w.name) ? 0x800 : 0, 8);
      record.writeUInt16LE(w.method, 10);
      record.writeUInt16LE(0, 12);
      record.writeUInt16LE(0x21, 14);
      record.writeUInt32LE(w.crc32, 16);
      record.writeUInt32LE(zip64 ? U32_MAX : w.compressedSize, 20);
      record.writeUInt32LE(zip64 ? U32_MAX : w.size, 24);
      record.writeUInt16LE(w.name.length, 28);
      record.writeUInt16LE(extra, 30);
      record.writeUInt32LE(zip64 ? U32_MAX : w.localOffset, 42);
      Buffer.from(w.name.buffer, w.name.byteOffset, w.name.length).copy(record, 46);
      if (zip64) {
        const e = 46 + w.name.length;
        record.writeUInt16LE(1, e);
        record.writeUInt16LE(24, e + 2);
        writeU64(record, e + 4, w.size);
        writeU64(record, e + 12, w.compressedSize);
        writeU64(record, e + 20, w.localOffset);
      }
      this.emit(record);
    }
    const cdSize = this.offset - cdOffset;
    const count = this.written.length;
    const zip64 = this.forceZip64 || count >= U16_MAX || cdSize >= U32_MAX || cdOffset >= U32_MAX;
    if (zip64) {
      const eocd64Offset = this.offset;
      const record = Buffer.alloc(56 + 20);
      record.writeUInt32LE(SIG_EOCD64, 0);
      writeU64(record, 4, 44);
      record.writeUInt16LE(45, 12);
      record.writeUInt16LE(45, 14);
      writeU64(record, 24, count);
      writeU64(record, 32, count);
      writeU64(record, 40, cdSize);
      writeU64(record, 48, cdOffset);
      record.writeUInt32LE(SIG_EOCD64_LOCATOR, 56);
      writeU64(record, 64, eocd64Offset);
      record.writeUInt32LE(1, 72);
      this.emit(record);
    }
    const end = Buffer.alloc(22);
    end.writeUInt32LE(SIG_EOCD, 0);
    end.writeUInt16LE(zip64 ? U16_MAX : count, 8);
    end.writeUInt16LE(zip64 ? U16_MAX : count, 10);
    end.writeUInt32LE(zip64 ? U32_MAX : cdSize, 12);
    end.writeUInt32LE(zip64 ? U32_MAX : cdOffset, 16);
    this.emit(end);
  }
}

function writeU64(buffer: Buffer, offset: number, value: number): void {
  buffer.writeUInt32LE(value % 2 ** 32, offset);
  buffer.writeUInt32LE(Math.floor(value / 2 ** 32), offset + 4);
}

function nonAscii(bytes: Uint8Array): boolean {
  return bytes.some((b) => b >= 0x80);
}

/** Builds a whole archive in memory. */
export function zipToBuffer(
  entries: readonly { name: string; data: Uint8Array; options?: ZipAddOptions }[],
  options: ZipWriterOptions = {},
): Buffer {
  const chunks: Uint8Array[] = [];
  const writer = new ZipWriter((chunk) => chunks.push(chunk), options);
  for (const entry of entries) writer.add(entry.name, entry.data, entry.options);
  writer.finish();
  return Buffer.concat(chunks);
}

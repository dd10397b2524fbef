import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Yolo5Error } from '../lib/errors';
import { readCheckpoint, toFloat32 } from '../lib/checkpoint';
import type { HostTensor } from '../lib/checkpoint';
import { ZipReader, zipToBuffer } from '../lib/checkpoint/zip';
import { runFuzz } from '../scripts/fuzz-checkpoint';
import { fixture, tempDir } from './helpers';

const CHECKPOINT = fixture('yolov5n-shapes5.pt');

// ---- a tiny pickle assembler for hand-made files ------------------------------------------------

type Part = number | string | Uint8Array | Part[];

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
}

const P = {
  proto: [0x80, 2],
  stop: '.',
  mark: '(',
  tuple: 't',
  tuple1: [0x85],
  tuple2: [0x86],
  emptyTuple: ')',
  emptyDict: '}',
  emptyList: ']',
  setitem: 's',
  setitems: 'u',
  append: 'a',
  reduce: 'R',
  build: 'b',
  binpersid: 'Q',
  none: 'N',
  false: [0x89],
  true: [0x88],
  global: (module: string, name: string): Part => `c${module}\n${name}\n`,
  str: (s: string): Part => {
    const bytes = Buffer.from(s, 'utf8');
    return ['X', u32(bytes.length), bytes];
  },
  int: (n: number): Part => {
    if (n >= -(2 ** 31) && n < 2 ** 31) return ['J', i32(n)];
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(n));
    return [[0x8a, 8], b];
  },
  put: (i: number): Part => ['q', [i]],
  get: (i: number): Part => ['h', [i]],
  ints: (...ns: number[]): Part => ['(', ...ns.map((n) => P.int(n)), 't'],
};

function assemble(parts: Part): Buffer {
  if (typeof parts === 'string') return Buffer.from(parts, 'latin1');
  if (typeof parts === 'number') return Buffer.from([parts]);
  if (parts instanceof Uint8Array) return Buffer.from(parts);
  if (parts.every((p) => typeof p === 'number')) return Buffer.from(parts as number[]);
  return Buffer.concat(parts.map(assemble));
}

/** `_rebuild_tensor_v2(storage(key, numel), offset, size, stride, False, OrderedDict())`. */
function tensor(
  key: string,
  numel: number,
  offset: number,
  size: number[],
  stride: number[],
  storage = 'FloatStorage',
): Part {
  return [
    P.global('torch._utils', '_rebuild_tensor_v2'),
    P.mark,
    [
      P.mark,
      P.str('storage'),
      P.global('torch', storage),
      P.str(key),
      P.str('cpu'),
      P.int(numel),
      P.tuple,
    ],
    P.binpersid,
    P.int(offset),
    P.ints(...size),
    P.ints(...stride),
    P.false,
    [P.global('collections', 'OrderedDict'), P.emptyTuple, P.reduce],
    P.tuple,
    P.reduce,
  ];
}

/** Our format with one more top-level entry, `extra` (converted into `meta`). */
function yolo5Pickle(extra: Part): Buffer {
  return dictPickle([
    ['format', P.str('yolo5')],
    ['model', P.emptyDict],
    ['extra', extra],
  ]);
}

/** A dict name → value pickled as a checkpoint's data.pkl. */
function dictPickle(entries: [string, Part][]): Buffer {
  return assemble([
    P.proto,
    P.emptyDict,
    P.mark,
    ...entries.map(([k, v]) => [P.str(k), v]),
    P.setitems,
    P.stop,
  ]);
}

function torchZip(
  pickle: Uint8Array,
  storages: Record<string, Uint8Array> = {},
  prefix = 'archive/',
): Buffer {
  return zipToBuffer([
    { name: `${prefix}data.pkl`, data: pickle },
    ...Object.entries(storages).map(([key, data]) => ({ name: `${prefix}data/${key}`, data })),
    { name: `${prefix}version`, data: Buffer.from('3\n') },
  ]);
}

function floats(...values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

const dir = tempDir('yolo5-ckpt-security-');
let fileCount = 0;
function writeTemp(bytes: Uint8Array, name = `case${fileCount++}.pt`): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Reading `bytes` fails with E_CHECKPOINT, naming the file and matching `message`. */
function rejects(bytes: Uint8Array, message: RegExp): Yolo5Error {
  const file = writeTemp(bytes);
  let caught: unknown;
  try {
    readCheckpoint(file);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Yolo5Error, `expected a Yolo5Error, got ${String(caught)}`);
  assert.equal(caught.code, 'E_CHECKPOINT', caught.message);
  assert.ok(caught.message.startsWith(`${file}: `), `message names the file: ${caught.message}`);
  assert.match(caught.message, message);
  assert.equal(caught.file, file);
  return caught;
}

// ---- hand-made archives that must load -----------------------------------------------------------

describe('hand-made archives', () => {
  test('strided views, offsets, shared storages and zero strides gather correctly', () => {
    const data = floats(0, 1, 2, 3, 4, 5);
    const ckpt = readCheckpoint(
      writeTemp(
        torchZip(
          dictPickle([
            ['transposed', tensor('0', 6, 0, [3, 2], [1, 3])],
            ['tail', tensor('0', 6, 4, [2], [1])],
            ['every_other', tensor('0', 6, 1, [3], [2])],
            ['expanded', tensor('0', 6, 2, [2, 3], [0, 1])],
            ['scalar', tensor('0', 6, 5, [], [])],
            ['empty', tensor('0', 6, 6, [0, 4], [4, 1])],
          ]),
          { '0': data },
        ),
      ),
    );
    assert.equal(ckpt.kind, 'state_dict');
    const values = (name: string): number[] => Array.from(toFloat32(ckpt.state.get(name)!));
    assert.deepEqual(values('transposed'), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(values('tail'), [4, 5]);
    assert.deepEqual(values('every_other'), [1, 3, 5]);
    assert.deepEqual(values('expanded'), [2, 3, 4, 2, 3, 4]);
    assert.deepEqual(values('scalar'), [5]);
    assert.deepEqual(ckpt.state.get('scalar')!.shape, []);
    assert.deepEqual(ckpt.state.get('empty')!.shape, [0, 4]);
  });

  test('numpy values of an unstripped YOLOv5 checkpoint become numbers and tensors', () => {
    // pickle.dumps({'format': 'yolo5', 'model': {}, 'best_fitness': np.array([0.625]), 'extra':
    //   [np.float64(0.25), np.int64(7), np.array([[1, 2], [3, 4]], dtype=np.int32).T]}, protocol=2)
    const pickle = Buffer.from(
      '80027d7100285806000000666f726d617471015805000000796f6c6f35710258050000006d6f6465' +
        '6c71037d7104580c000000626573745f6669746e6573737105636e756d70792e636f72652e6d756c' +
        '746961727261790a5f7265636f6e7374727563740a7106636e756d70790a6e6461727261790a7107' +
        '4b00857108635f636f646563730a656e636f64650a7109580100000062710a58060000006c617469' +
        '6e31710b86710c52710d87710e52710f284b014b01857110636e756d70790a64747970650a711158' +
        '02000000663871128988877113527114284b0358010000003c71154e4e4e4affffffff4affffffff' +
        '4b00747116628968095809000000000000000000c3a43f7117680b86711852711974711a62580500' +
        '00006578747261711b5d711c28636e756d70792e636f72652e6d756c746961727261790a7363616c' +
        '61720a711d681468095809000000000000000000c3903f711e680b86711f52712086712152712268' +
        '1d68115802000000693871238988877124527125284b0368154e4e4e4affffffff4affffffff4b00' +
        '747126626809580800000007000000000000007127680b86712852712986712a52712b680668074b' +
        '0085712c680d87712d52712e284b014b024b0286712f681158020000006934713089888771315271' +
        '32284b0368154e4e4e4affffffff4affffffff4b0074713362886809581000000001000000020000' +
        '0003000000040000007134680b8671355271367471376265752e',
      'hex',
    );
    const ckpt = readCheckpoint(writeTemp(torchZip(pickle)));
    assert.equal(ckpt.bestFitness, 0.625);
    const [scalar, int, transposed] = ckpt.meta['extra'] as [number, number, HostTensor];
    assert.equal(scalar, 0.25);
    assert.equal(int, 7);
    assert.deepEqual(transposed, {
      dtype: 'int32',
      shape: [2, 2],
      data: new Int32Array([1, 3, 2, 4]),
    });
  });

  test('any archive prefix and a big-endian byteorder are honoured', () => {
    const pickle = dictPickle([['w', tensor('0', 2, 0, [2], [1])]]);
    const bigEndian = Buffer.from(floats(1.5, -2));
    bigEndian.swap32();
    const bytes = zipToBuffer([
      { name: 'best/data.pkl', data: pickle },
      { name: 'best/byteorder', data: Buffer.from('big') },
      { name: 'best/data/0', data: bigEndian },
    ]);
    assert.deepEqual(
      Array.from(toFloat32(readCheckpoint(writeTemp(bytes)).state.get('w')!)),
      [1.5, -2],
    );
  });
});

// ---- code execution is refused -------------------------------------------------------------------

describe('globals outside the allow-list are refused by name', () => {
  const calls: [string, string, Part][] = [
    ['os', 'system', [P.str('touch /tmp/yolo5-pwned'), P.tuple1]],
    ['posix', 'system', [P.str('touch /tmp/yolo5-pwned'), P.tuple1]],
    ['builtins', 'eval', [P.str('__import__("os").system("true")'), P.tuple1]],
    ['__builtin__', 'eval', [P.str('1+1'), P.tuple1]],
    ['subprocess', 'Popen', [P.mark, P.str('true'), P.tuple, P.tuple1]],
    ['builtins', 'getattr', [P.none, P.str('x'), P.tuple2]],
    ['torch', 'load', [P.str('x'), P.tuple1]],
    ['models.common', '__init__', [P.emptyTuple]],
  ];
  for (const [module, name, args] of calls) {
    test(`${module}.${name}`, () => {
      const pickle = assemble([P.proto, P.global(module, name), args, P.reduce, P.stop]);
      const shown = module === '__builtin__' ? `builtins.${name}` : `${module}.${name}`;
      rejects(
        torchZip(pickle),
        new RegExp(`refusing to load global '${shown.replace(/\./g, '\\.')}'`),
      );
      assert.ok(!fs.existsSync('/tmp/yolo5-pwned'));
    });
  }

  test('names that exist on every JS object are not globals', () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const pickle = assemble([P.proto, P.global('torch', name), P.stop]);
      rejects(torchZip(pickle), new RegExp(`refusing to load global 'torch\\.${name}'`));
    }
    const dtype = assemble([
      P.proto,
      P.global('numpy', 'dtype'),
      P.str('constructor'),
      P.tuple1,
      P.reduce,
      P.stop,
    ]);
    rejects(torchZip(dtype), /numpy dtype 'constructor' is not supported/);
  });

  test('a dict key __proto__ stays a plain key', () => {
    const pickle = yolo5Pickle([
      P.emptyDict,
      P.str('__proto__'),
      P.emptyDict,
      P.str('polluted'),
      P.true,
      P.setitem,
      P.setitem,
    ]);
    const extra = readCheckpoint(writeTemp(torchZip(pickle))).meta['extra'] as Record<
      string,
      unknown
    >;
    assert.equal(Object.getPrototypeOf(extra), Object.prototype);
    assert.deepEqual(Object.keys(extra), ['__proto__']);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  test('STACK_GLOBAL is checked the same way', () => {
    const pickle = assemble([
      P.proto,
      P.str('os'),
      P.str('system'),
      [0x93],
      P.str('true'),
      P.tuple1,
      P.reduce,
      P.stop,
    ]);
    rejects(torchZip(pickle), /refusing to load global 'os\.system'/);
  });

  test('an allowed module class cannot be called, only instantiated empty', () => {
    const pickle = assemble([
      P.proto,
      P.global('models.common', 'Conv'),
      P.str('x'),
      P.tuple1,
      P.reduce,
      P.stop,
    ]);
    rejects(torchZip(pickle), /'models\.common\.Conv' cannot be called/);
  });
});

// ---- malformed pickles ---------------------------------------------------------------------------

describe('malformed pickles', () => {
  test('an unknown opcode is named with its byte and offset', () => {
    rejects(
      torchZip(assemble([P.proto, P.emptyDict, [0xff], P.stop])),
      /data\.pkl at byte 3: unknown pickle opcode 0xff/,
    );
  });

  test('a pickle without STOP', () => {
    rejects(torchZip(assemble([P.proto, P.emptyDict])), /ends without a STOP/);
  });

  test('deep nesting: 100k MARKs, 100k EMPTY_LISTs, 100k nested lists and tuples', () => {
    rejects(
      torchZip(assemble([P.proto, '('.repeat(100_000), P.stop])),
      /nests deeper than 1000 marks/,
    );
    rejects(
      torchZip(assemble([P.proto, ']'.repeat(200_000), P.stop])),
      /stack exceeds 100000 items/,
    );
    // lists nested through the memo keep the stack flat: L(i-1).append(Li); the converter must stop
    const lists: Part[] = [P.emptyList, ['r', u32(0)]];
    for (let i = 1; i < 100_000; i++) {
      lists.push(P.emptyList, ['r', u32(i)], '0', ['j', u32(i - 1)], ['j', u32(i)], P.append, '0');
    }
    rejects(torchZip(yolo5Pickle(lists)), /extra(\[0\])+ nests deeper than 1000 levels/);
    const tuples = [P.emptyTuple, ...Array<Part>(100_000).fill(P.tuple1)];
    rejects(torchZip(yolo5Pickle(tuples)), /extra(\[0\])+ nests deeper than 1000 levels/);
  });

  test('a list that contains itself', () => {
    rejects(
      torchZip(yolo5Pickle([P.emptyList, P.put(0), P.get(0), P.append])),
      /extra\[0\] contains itself/,
    );
  });

  test('shared containers cannot multiply work exponentially', () => {
    // L0 = [], L(i+1) = [Li, Li]: 2^60 leaves if anything walked it naively
    const lists: Part[] = [P.emptyList, ['r', u32(0)], '0'];
    for (let i = 1; i <= 60; i++) {
      lists.push(
        P.emptyList,
        ['r', u32(i)],
        P.mark,
        ['j', u32(i - 1)],
        ['j', u32(i - 1)],
        'e',
        '0',
      );
    }
    lists.push(['j', u32(60)]);
    const started = Date.now();
    const ckpt = readCheckpoint(writeTemp(torchZip(yolo5Pickle(lists))));
    const extra = ckpt.meta['extra'] as unknown[][];
    assert.equal(extra[0], extra[1], 'shared lists stay shared');
    assert.ok(Date.now() - started < 2000);
  });

  test('a memo reference that was never stored', () => {
    rejects(torchZip(assemble([P.proto, P.get(7), P.stop])), /memo has no entry 7/);
  });

  test('an absurd string length is bounded by the remaining bytes', () => {
    rejects(
      torchZip(assemble([P.proto, 'X', u32(0xfffffff0), 'abc'])),
      /BINUNICODE needs 4294967280 bytes but 3 remain/,
    );
    rejects(
      torchZip(assemble([P.proto, [0x8d], u32(0), u32(0x200000), P.stop])),
      /BINUNICODE8 needs/,
    );
  });

  test('an oversized LONG4 is refused before it is decoded', () => {
    rejects(
      torchZip(assemble([P.proto, [0x8b], u32(1e9), P.stop])),
      /Python int of 1000000000 bytes/,
    );
  });
});

// ---- malformed tensors ---------------------------------------------------------------------------

describe('malformed tensors', () => {
  test('a storage smaller than the tensor extent', () => {
    const pickle = dictPickle([['w', tensor('0', 4, 1, [2, 2], [2, 1])]]);
    rejects(
      torchZip(pickle, { '0': floats(1, 2, 3, 4) }),
      /reaches element 4 but the storage holds 4/,
    );
  });

  test('a negative stride or offset', () => {
    rejects(
      torchZip(dictPickle([['w', tensor('0', 4, 3, [4], [-1])]]), { '0': floats(1, 2, 3, 4) }),
      /bad stride -1/,
    );
    rejects(
      torchZip(dictPickle([['w', tensor('0', 4, -1, [1], [1])]]), { '0': floats(1, 2, 3, 4) }),
      /bad storage offset -1/,
    );
  });

  test('a storage whose entry size disagrees with its element count', () => {
    rejects(
      torchZip(dictPickle([['w', tensor('0', 5, 0, [4], [1])]]), { '0': floats(1, 2, 3, 4) }),
      /holds 16 bytes but 5 float32 values need 20/,
    );
  });

  test('a 10 GB tensor claim fails fast without allocating', () => {
    const started = process.hrtime.bigint();
    const tenGiB = 10 * 2 ** 30;
    // the storage claims 2.5 G floats: its zip entry would have to be 10 GB
    rejects(
      torchZip(dictPickle([['w', tensor('0', tenGiB / 4, 0, [tenGiB / 4], [1])]]), {
        '0': floats(1),
      }),
      /holds 4 bytes but 2684354560 float32 values need 10737418240/,
    );
    // a tensor of 2.5 G elements repeated from one value by a zero stride
    rejects(
      torchZip(dictPickle([['w', tensor('0', 1, 0, [tenGiB / 4], [0])]]), { '0': floats(1) }),
      /2684354560 elements repeated from a storage of 1/,
    );
    assert.ok(Number(process.hrtime.bigint() - started) / 1e9 < 2, 'rejected quickly');
  });

  test('a storage that is missing from the zip', () => {
    rejects(
      torchZip(dictPickle([['w', tensor('7', 1, 0, [1], [1])]])),
      /storage '7' is missing: no zip entry 'archive\/data\/7'/,
    );
  });

  test('a persistent id that is not a storage', () => {
    const pickle = assemble([P.proto, P.str('x'), P.binpersid, P.stop]);
    rejects(torchZip(pickle), /persistent id is a str/);
  });
});

// ---- malformed zips ------------------------------------------------------------------------------

describe('malformed zip files', () => {
  const original = fs.readFileSync(CHECKPOINT);

  test('the fixture cut at many points', () => {
    for (const at of [
      0,
      1,
      21,
      30,
      64,
      1000,
      77_900,
      original.length / 2,
      original.length - 99,
      original.length - 23,
      original.length - 1,
    ]) {
      rejects(original.subarray(0, Math.floor(at)), /zip|truncated|checkpoint/);
    }
  });

  test('a flipped byte in a storage fails its CRC', () => {
    const bytes = Buffer.from(original);
    bytes[new ZipReader(original, 'x').entries.get('yolov5n-shapes5/data/102')!.dataOffset + 100] ^=
      0x55;
    rejects(
      bytes,
      /zip entry '[^']+' is corrupt: CRC-32 [0-9a-f]{8} does not match the recorded [0-9a-f]{8}/,
    );
  });

  test('a flipped byte in the pickle fails its CRC before unpickling', () => {
    const bytes = Buffer.from(original);
    bytes[1000] ^= 0x01;
    rejects(bytes, /'yolov5n-shapes5\/data\.pkl' is corrupt: CRC-32/);
  });

  test('a 10 GB size claim in the central directory fails before any allocation', () => {
    const entries = [
      {
        name: 'archive/data.pkl',
        data: assemble([P.proto, P.none, P.stop]),
        options: { deflate: true },
      },
    ];
    const base = zipToBuffer(entries, { forceZip64: true });
    const cd = base.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const zip64Extra = cd + 46 + 'archive/data.pkl'.length + 4;
    const stored = Buffer.from(base);
    stored.writeUInt32LE(0x80000000, zip64Extra); // size: 10 GiB
    stored.writeUInt32LE(2, zip64Extra + 4);
    rejects(stored, /claims 10737418240 bytes/);
    const small = zipToBuffer(entries);
    const cd2 = small.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    small.writeUInt32LE(0xfffffffe, cd2 + 24); // 4 GB from a few compressed bytes
    rejects(small, /claims 4294967294 bytes from \d+ compressed bytes/);
    small.writeUInt32LE(100, cd2 + 24); // a plausible claim the data does not fill
    rejects(small, /inflates to 4 bytes, not the declared 100/);
    small.writeUInt32LE(2, cd2 + 24); // and one it overflows
    rejects(small, /inflates to more than its declared 2 bytes/);
  });

  test('an entry offset beyond the file and too many entries', () => {
    const base = torchZip(assemble([P.proto, P.none, P.stop]));
    const cd = base.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const far = Buffer.from(base);
    far.writeUInt32LE(0x7fffffff, cd + 42);
    rejects(far, /local header at byte 2147483647 \(\+30\) lies beyond the file/);
    const eocd = base.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    const many = Buffer.from(base);
    many.writeUInt16LE(0xfffe, eocd + 10);
    rejects(many, /zip claims 65534 entries in a \d+-byte directory/);
  });

  test('not a zip at all, and a legacy torch.save file', () => {
    rejects(Buffer.from('hello, this is not a checkpoint at all'), /not a zip checkpoint/);
    rejects(
      assemble([P.proto, P.none, P.stop, Buffer.alloc(30)]),
      /legacy \(pre-1\.6, non-zip\) torch\.save/,
    );
  });

  test('a zip without data.pkl, and one whose pickle is no checkpoint', () => {
    rejects(zipToBuffer([{ name: 'x/other', data: Buffer.from('1') }]), /no <archive>\/data\.pkl/);
    rejects(
      torchZip(assemble([P.proto, P.int(3), P.stop])),
      /not a YOLOv5 checkpoint or state dict: the file holds an int/,
    );
  });
});

test('a missing file is E_FILE', () => {
  const file = path.join(dir, 'does-not-exist.pt');
  assert.throws(
    () => readCheckpoint(file),
    (err: unknown) =>
      err instanceof Yolo5Error && err.code === 'E_FILE' && err.message === `${file}: no such file`,
  );
});

test('the fuzzer finds only checkpoints and Yolo5Errors (300 iterations)', () => {
  const summary = runFuzz({ iterations: 300, seed: 12345 });
  assert.equal(summary.iterations, 300);
  assert.deepEqual(summary.crashes, []);
  assert.ok(summary.iterations - summary.ok > 200, 'most mutations are rejected');
  assert.ok(summary.ok > 0, 'some mutations still read');
});

import { createCipheriv, createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ChunkerOptions,
  chunkerOptions,
  chunkFile,
  chunkStream,
  DEFAULT_CHUNKER,
  nextCut,
} from '@splintertree/cdc';
import { isSplinterError } from '@splintertree/errors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const KiB = 1024;
const MiB = 1024 * 1024;
const SMALL = chunkerOptions({ minSize: 64, avgSize: 256, maxSize: 1024 });

/** `length` bytes of AES-256-CTR keystream keyed by SHA-256(label): random-looking and repeatable. */
function randomData(length: number, label: string): Uint8Array {
  const key = createHash('sha256').update(label).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return new Uint8Array(cipher.update(Buffer.alloc(length)));
}

/**
 * xorshift32 (Marsaglia: x ^= x << 13; x ^= x >>> 17; x ^= x << 5, on 32 bits) from `seed`, each
 * 32-bit output written little-endian, the last one truncated to fit.
 */
function xorshift32Bytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    for (let k = 0; k < 4 && i + k < length; k++) bytes[i + k] = (x >>> (8 * k)) & 0xff;
  }
  return bytes;
}

/** Chunk lengths from nextCut over the whole buffer at once. */
function cutLengths(data: Uint8Array, options: Readonly<ChunkerOptions>): number[] {
  const lengths: number[] = [];
  for (let offset = 0; offset < data.length; ) {
    const length = nextCut(data, offset, data.length, options, true);
    lengths.push(length);
    offset += length;
  }
  return lengths;
}

/**
 * packages/cdc/README.md read literally, one byte at a time, in plain (double) arithmetic: what
 * another implementation of the format would write. The package's unrolled Int32 loop must agree.
 */
function referenceCutLengths(data: Uint8Array, { minSize, avgSize, maxSize }: ChunkerOptions): number[] {
  const gear = referenceGear();
  const bits = Math.log2(avgSize);
  const lengths: number[] = [];
  for (let offset = 0; offset < data.length; ) {
    let length = Math.min(maxSize, data.length - offset);
    let hash = 0;
    for (let j = minSize; j < length; j++) {
      hash = hash * 2 + gear[data[offset + j]!]!;
      while (hash >= 2 ** 32) hash -= 2 ** 32;
      const maskBits = j < avgSize ? bits + 2 : bits - 2;
      if (hash < 2 ** (32 - maskBits)) {
        length = j + 1;
        break;
      }
    }
    lengths.push(length);
    offset += length;
  }
  return lengths;
}

/** The README's rule: GEAR[b] = SHA-256("splinter cdc gear v1" || b), first 4 bytes big-endian. */
function referenceGear(): number[] {
  return Array.from({ length: 256 }, (_, byte) =>
    createHash('sha256').update('splinter cdc gear v1').update(Uint8Array.of(byte)).digest().readUInt32BE(0),
  );
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function chunkDigests(data: Uint8Array, options: Readonly<ChunkerOptions>): string[] {
  const digests: string[] = [];
  let offset = 0;
  for (const length of cutLengths(data, options)) {
    digests.push(sha256(data.subarray(offset, offset + length)));
    offset += length;
  }
  return digests;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** A source that hands `data` over in pieces of the given sizes, each one copied into a fresh buffer. */
async function* inPieces(data: Uint8Array, sizes: () => number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.length; ) {
    const size = Math.min(sizes(), data.length - offset);
    yield data.slice(offset, offset + size);
    offset += size;
  }
}

/** Sizes from 1 to `largest`, log-uniform (most of them small, some huge), from a fixed seed. */
function readSizes(largest: number, seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return Math.max(1, Math.floor(largest ** ((x >>> 0) / 2 ** 32)));
  };
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const copies: Uint8Array[] = [];
  for await (const chunk of chunks) copies.push(chunk.slice());
  return copies;
}

describe('known answers (these vectors pin the patch format: changing them is a format break)', () => {
  it('cuts xorshift32(seed 1) bytes at the recorded lengths with the default options', () => {
    expect(cutLengths(xorshift32Bytes(2 * MiB, 1), DEFAULT_CHUNKER)).toEqual(KNOWN_DEFAULT);
  });

  it('cuts xorshift32(seed 1) bytes at the recorded lengths with 64 / 256 / 1024', () => {
    expect(cutLengths(xorshift32Bytes(8 * KiB, 1), SMALL)).toEqual(KNOWN_SMALL);
  });
});

// Recorded from this implementation, which agrees with referenceCutLengths (tested below). The bytes
// start 21 20 04 00 01 06 08 04 c5 a8 cc 9d 4f 99 55 12 (first output 270369). Changing these numbers
// changes where every patch is cut: it is a format break, not a test update.
const KNOWN_DEFAULT = [
  78419, 124615, 56910, 104497, 143964, 83638, 76538, 79636, 69929, 66592, 80681, 70993, 66727, 37682, 68954,
  102958, 94912, 75143, 84455, 55892, 75547, 32723, 76319, 78122, 39449, 73877, 70530, 27450,
];
const KNOWN_SMALL = [
  289, 269, 155, 177, 283, 364, 403, 280, 313, 307, 272, 264, 438, 330, 397, 435, 84, 98, 76, 274, 264, 402,
  597, 342, 476, 299, 264, 40,
];

describe('the gear table', () => {
  it('has the check values the README states', () => {
    const gear = referenceGear();
    expect([0, 1, 2, 255].map((byte) => gear[byte]!.toString(16).padStart(8, '0'))).toEqual([
      '1a61526e',
      '8b851463',
      '479270c7',
      '70322c82',
    ]);
    const bigEndian = Buffer.alloc(1024);
    for (const [byte, value] of gear.entries()) bigEndian.writeUInt32BE(value, 4 * byte);
    expect(sha256(bigEndian)).toBe('b23c524128a1e0a584502e0a2e7347512207d5a5261f3b5325af4286e0ca3d4a');
  });
});

describe('nextCut', () => {
  const data = randomData(16 * MiB, 'agreement');

  it('agrees with a byte-at-a-time reading of the README for several option sets', () => {
    for (const options of [
      DEFAULT_CHUNKER,
      SMALL,
      chunkerOptions({ minSize: 2 * KiB, avgSize: 8 * KiB, maxSize: 64 * KiB }),
      chunkerOptions({ minSize: 64 * KiB, avgSize: 64 * KiB, maxSize: 100 * KiB }),
      chunkerOptions({ minSize: 100, avgSize: 4 * KiB, maxSize: 4 * KiB }),
      chunkerOptions({ minSize: 1 * MiB, avgSize: 1 * MiB, maxSize: 1 * MiB }),
    ]) {
      const reference = referenceCutLengths(data, options);
      expect(cutLengths(data, options), JSON.stringify(options)).toEqual(reference);
      if (options.minSize < options.maxSize) expect(new Set(reference).size).toBeGreaterThan(100);
    }
  });

  it('is deterministic and independent of where the bytes sit in memory', () => {
    const first = cutLengths(data, DEFAULT_CHUNKER);
    expect(cutLengths(data, DEFAULT_CHUNKER)).toEqual(first);
    const shifted = new Uint8Array(data.length + 3);
    shifted.set(data, 3);
    expect(cutLengths(shifted.subarray(3), DEFAULT_CHUNKER)).toEqual(first);
  });

  it('keeps every chunk but the last within [minSize, maxSize], covering the input exactly', () => {
    for (const options of [DEFAULT_CHUNKER, SMALL]) {
      const lengths = cutLengths(data, options);
      expect(lengths.reduce((sum, length) => sum + length, 0)).toBe(data.length);
      for (const length of lengths.slice(0, -1)) {
        expect(length).toBeGreaterThanOrEqual(options.minSize);
        expect(length).toBeLessThanOrEqual(options.maxSize);
      }
      expect(lengths.at(-1)).toBeLessThanOrEqual(options.maxSize);
    }
  });

  it('keeps the mean chunk size on random data within 20% of avgSize', () => {
    const big = randomData(64 * MiB, 'mean');
    for (const options of [DEFAULT_CHUNKER, SMALL]) {
      const lengths = cutLengths(options === SMALL ? big.subarray(0, 4 * MiB) : big, options);
      const mean = lengths.reduce((sum, length) => sum + length, 0) / lengths.length;
      expect(mean / options.avgSize).toBeGreaterThan(0.8);
      expect(mean / options.avgSize).toBeLessThan(1.2);
    }
  });

  it('asks for more bytes only when no cut point lies in fewer than maxSize bytes', () => {
    const cut = nextCut(data, 0, data.length, DEFAULT_CHUNKER, true);
    expect(cut).toBeLessThan(DEFAULT_CHUNKER.maxSize);
    expect(nextCut(data, 0, cut, DEFAULT_CHUNKER, false)).toBe(cut);
    expect(nextCut(data, 0, cut - 1, DEFAULT_CHUNKER, false)).toBe(0);
    expect(nextCut(data, 0, cut - 1, DEFAULT_CHUNKER, true)).toBe(cut - 1);
    expect(nextCut(data, 0, DEFAULT_CHUNKER.minSize, DEFAULT_CHUNKER, false)).toBe(0);
    expect(nextCut(data, 0, DEFAULT_CHUNKER.minSize, DEFAULT_CHUNKER, true)).toBe(DEFAULT_CHUNKER.minSize);
    expect(nextCut(data, 5, 5, DEFAULT_CHUNKER, true)).toBe(0);
    // Nothing past offset + maxSize is looked at.
    for (let offset = 0; offset < 4 * MiB; offset += 333_333) {
      expect(nextCut(data, offset, offset + DEFAULT_CHUNKER.maxSize, DEFAULT_CHUNKER, false)).toBe(
        nextCut(data, offset, data.length, DEFAULT_CHUNKER, false),
      );
    }
  });

  it('refuses a range outside the data and options that were not validated', () => {
    const invalid = (run: () => unknown) => {
      expect(run).toThrow();
      try {
        run();
      } catch (error) {
        expect(isSplinterError(error, 'INVALID_ARGUMENT')).toBe(true);
      }
    };
    invalid(() => nextCut(data, 0, data.length + 1, DEFAULT_CHUNKER, true));
    invalid(() => nextCut(data, 10, 5, DEFAULT_CHUNKER, true));
    invalid(() => nextCut(data, -1, 5, DEFAULT_CHUNKER, true));
    invalid(() => nextCut(data, 0.5, 5, DEFAULT_CHUNKER, true));
    invalid(() => nextCut(data, 0, 5, { minSize: 64, avgSize: 100, maxSize: 1024 }, true));
  });
});

describe('fixed-size mode (minSize = avgSize = maxSize)', () => {
  it('cuts exactly that size, any integer, with a short tail', () => {
    const data = randomData(5 * MiB + 12_345, 'fixed');
    const oneMiB = chunkerOptions({ minSize: MiB, avgSize: MiB, maxSize: MiB });
    expect(cutLengths(data, oneMiB)).toEqual([MiB, MiB, MiB, MiB, MiB, 12_345]);
    const odd = chunkerOptions({ minSize: 100_000, avgSize: 100_000, maxSize: 100_000 });
    const lengths = cutLengths(data, odd);
    expect(lengths.slice(0, -1).every((length) => length === 100_000)).toBe(true);
    expect(lengths.at(-1)).toBe(data.length % 100_000);
    expect(nextCut(data, 0, MiB - 1, oneMiB, false)).toBe(0);
    expect(nextCut(data, 0, MiB - 1, oneMiB, true)).toBe(MiB - 1);
  });
});

describe('an edit changes only the chunks near it', () => {
  const original = randomData(64 * MiB, 'edits');
  const at = 32 * MiB + 12_345;
  const originalDigests = chunkDigests(original, DEFAULT_CHUNKER);
  const { maxSize } = DEFAULT_CHUNKER;

  /** Chunks of `edited` whose digest is not among the original's, and the original's not in `edited`. */
  function compare(edited: Uint8Array, options = DEFAULT_CHUNKER) {
    const before = options === DEFAULT_CHUNKER ? originalDigests : chunkDigests(original, options);
    const after = chunkDigests(edited, options);
    const lengths = cutLengths(edited, options);
    const beforeSet = new Set(before);
    const afterSet = new Set(after);
    const added = after.map((digest, index) => ({ digest, length: lengths[index]! }));
    const newChunks = added.filter(({ digest }) => !beforeSet.has(digest));
    return {
      total: before.length,
      newChunks: newChunks.length,
      newBytes: newChunks.reduce((sum, { length }) => sum + length, 0),
      lostChunks: before.filter((digest) => !afterSet.has(digest)).length,
    };
  }

  it('inserting 1 MiB', () => {
    const edited = concat(original.subarray(0, at), randomData(MiB, 'inserted'), original.subarray(at));
    const result = compare(edited);
    expect(result.total).toBeGreaterThan(800);
    expect(result.lostChunks).toBeLessThanOrEqual(3);
    expect(result.newBytes).toBeLessThanOrEqual(MiB + 3 * maxSize);
  });

  it('deleting 300,000 bytes', () => {
    const edited = concat(original.subarray(0, at), original.subarray(at + 300_000));
    const result = compare(edited);
    expect(result.newChunks).toBeLessThanOrEqual(3);
    expect(result.lostChunks).toBeLessThanOrEqual(Math.ceil(300_000 / DEFAULT_CHUNKER.minSize) + 3);
  });

  it('overwriting 4 KiB', () => {
    const edited = original.slice();
    edited.set(randomData(4 * KiB, 'overwrite'), at);
    const result = compare(edited);
    expect(result.newChunks).toBeLessThanOrEqual(3);
    expect(result.lostChunks).toBeLessThanOrEqual(3);
  });

  it('(while fixed-size chunks after an insertion all change: the measure above can tell)', () => {
    const fixed = chunkerOptions({ minSize: 64 * KiB, avgSize: 64 * KiB, maxSize: 64 * KiB });
    const edited = concat(original.subarray(0, at), Uint8Array.of(7), original.subarray(at));
    const result = compare(edited, fixed);
    expect(result.lostChunks).toBeGreaterThan(result.total / 2 - 2);
  });
});

describe('chunkStream', () => {
  const data = randomData(48 * MiB + 777, 'stream');

  it('gives the same chunks as one call over the whole buffer, whatever the read sizes (1 byte .. 3 MiB)', async () => {
    const expected = cutLengths(data, DEFAULT_CHUNKER);
    for (const seed of [1, 2, 3]) {
      const chunks = await collect(chunkStream(inPieces(data, readSizes(3 * MiB, seed)), DEFAULT_CHUNKER));
      expect(chunks.map((chunk) => chunk.length)).toEqual(expected);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
    }
  });

  it('gives the same chunks with small options and small reads, from a source reusing one buffer', async () => {
    const part = data.subarray(0, 2 * MiB + 5);
    const shared = new Uint8Array(3000);
    const sizes = readSizes(3000, 9);
    async function* reusing(): AsyncGenerator<Uint8Array> {
      for (let offset = 0; offset < part.length; ) {
        const size = Math.min(sizes(), part.length - offset);
        shared.set(part.subarray(offset, offset + size));
        yield shared.subarray(0, size);
        offset += size;
      }
    }
    const internal = new Set<ArrayBufferLike>();
    const chunks: Uint8Array[] = [];
    for await (const chunk of chunkStream(reusing(), SMALL)) {
      if (chunk.buffer !== shared.buffer) internal.add(chunk.buffer);
      chunks.push(chunk.slice());
    }
    expect(chunks.map((chunk) => chunk.length)).toEqual(cutLengths(part, SMALL));
    expect(Buffer.concat(chunks).equals(part)).toBe(true);
    // One internal buffer of 2 x maxSize, whatever the input size.
    expect([...internal].map((buffer) => buffer.byteLength)).toEqual([2 * SMALL.maxSize]);
  });

  it('yields chunks lying wholly in a large input as views of it, not copies', async () => {
    const input = data.subarray(0, 8 * MiB);
    async function* once(): AsyncGenerator<Uint8Array> {
      yield input;
    }
    let offset = 0;
    let views = 0;
    for await (const chunk of chunkStream(once())) {
      // Only the tail (under maxSize bytes) is copied, to wait for bytes that never come.
      if (offset + DEFAULT_CHUNKER.maxSize <= input.length) {
        expect(chunk.buffer).toBe(input.buffer);
        views++;
      }
      offset += chunk.length;
    }
    expect(views).toBeGreaterThan(100);
  });

  it('yields nothing for an empty source and one tail chunk for a short one', async () => {
    expect(await collect(chunkStream(inPieces(new Uint8Array(0), () => 1)))).toEqual([]);
    const short = await collect(chunkStream(inPieces(data.subarray(0, 1000), () => 7)));
    expect(short.map((chunk) => chunk.length)).toEqual([1000]);
  });
});

describe('chunkFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splinter-cdc-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the chunks of the file at their offsets, as one call over its bytes does', async () => {
    const data = randomData(21 * MiB + 3, 'file');
    const path = join(dir, 'data.bin');
    await writeFile(path, data);
    const expected = cutLengths(data, DEFAULT_CHUNKER);
    let offset = 0;
    let index = 0;
    for await (const chunk of chunkFile(path)) {
      expect(chunk.offset).toBe(offset);
      expect(chunk.bytes.length).toBe(expected[index]);
      expect(Buffer.from(chunk.bytes).equals(data.subarray(offset, offset + chunk.bytes.length))).toBe(true);
      offset += chunk.bytes.length;
      index++;
    }
    expect(index).toBe(expected.length);
  });

  it('stops cleanly when the caller breaks off, and says NOT_FOUND for a missing file', async () => {
    const path = join(dir, 'early.bin');
    await writeFile(path, randomData(9 * MiB, 'early'));
    let seen = 0;
    for await (const _ of chunkFile(path)) if (++seen === 3) break;
    expect(seen).toBe(3);
    await expect(chunkFile(join(dir, 'missing.bin')).next()).rejects.toSatisfy((error: unknown) =>
      isSplinterError(error, 'NOT_FOUND'),
    );
  });
});

describe('chunkerOptions', () => {
  it('defaults to 16 / 64 / 256 KiB, frozen, and fills missing fields from the defaults', () => {
    expect(chunkerOptions()).toEqual({ minSize: 16 * KiB, avgSize: 64 * KiB, maxSize: 256 * KiB });
    expect(DEFAULT_CHUNKER).toEqual(chunkerOptions());
    expect(Object.isFrozen(chunkerOptions())).toBe(true);
    expect(chunkerOptions({ maxSize: MiB })).toEqual({ minSize: 16 * KiB, avgSize: 64 * KiB, maxSize: MiB });
    expect(chunkerOptions({ minSize: 64, avgSize: 64, maxSize: 16 * MiB }).maxSize).toBe(16 * MiB);
  });

  it.each([
    [{ minSize: 63, avgSize: 64 }, 'below 64'],
    [{ maxSize: 16 * MiB + 1 }, 'above'],
    [{ avgSize: 48 * KiB }, 'power of two'],
    [{ minSize: 128 * KiB }, 'minSize <= avgSize <= maxSize'],
    [{ maxSize: 32 * KiB }, 'minSize <= avgSize <= maxSize'],
    [{ minSize: 1.5 }, 'not an integer'],
    [{ avgSize: Number.NaN }, 'not an integer'],
  ])('refuses %j with INVALID_ARGUMENT', (partial, says) => {
    try {
      chunkerOptions(partial);
      expect.unreachable('chunkerOptions accepted invalid options');
    } catch (error) {
      expect(isSplinterError(error, 'INVALID_ARGUMENT')).toBe(true);
      expect((error as Error).message).toContain(says);
    }
  });
});

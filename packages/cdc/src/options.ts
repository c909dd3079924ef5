import { SplinterError } from '@splintertree/errors';

export interface ChunkerOptions {
  /** No chunk but the last is shorter than this; the first minSize bytes of a chunk are not hashed. */
  minSize: number;
  /** The normalisation point (a power of two) where the cut mask loosens; the mean is ~1.14x this. */
  avgSize: number;
  /** No chunk is longer than this. */
  maxSize: number;
}

/** The smallest minSize: above the 32-byte window of the hash, so every cut depends on content alone. */
const SMALLEST_MIN = 64;
const LARGEST_MAX = 16 * 1024 * 1024;

/** 16 KiB / 64 KiB / 256 KiB. */
export const DEFAULT_CHUNKER: Readonly<ChunkerOptions> = Object.freeze({
  minSize: 16 * 1024,
  avgSize: 64 * 1024,
  maxSize: 256 * 1024,
});

/**
 * Validated chunker options, missing fields taken from DEFAULT_CHUNKER. Throws INVALID_ARGUMENT unless
 * all three are integers with 64 <= minSize <= avgSize <= maxSize <= 16 MiB and avgSize a power of two.
 * minSize === avgSize === maxSize selects fixed-size chunks, where avgSize may be any integer.
 */
export function chunkerOptions(partial: Partial<ChunkerOptions> = {}): Readonly<ChunkerOptions> {
  const options = {
    minSize: partial.minSize ?? DEFAULT_CHUNKER.minSize,
    avgSize: partial.avgSize ?? DEFAULT_CHUNKER.avgSize,
    maxSize: partial.maxSize ?? DEFAULT_CHUNKER.maxSize,
  };
  assertChunkerOptions(options);
  return Object.freeze(options);
}

export function assertChunkerOptions(options: Readonly<ChunkerOptions>): void {
  const problem = optionsProblem(options);
  if (problem !== undefined) {
    const { minSize, avgSize, maxSize } = options;
    throw new SplinterError('INVALID_ARGUMENT', `chunker options: ${problem}`, {
      details: { minSize, avgSize, maxSize },
    });
  }
}

function optionsProblem({ minSize, avgSize, maxSize }: Readonly<ChunkerOptions>): string | undefined {
  if (!Number.isSafeInteger(minSize)) return `minSize ${String(minSize)} is not an integer`;
  if (!Number.isSafeInteger(avgSize)) return `avgSize ${String(avgSize)} is not an integer`;
  if (!Number.isSafeInteger(maxSize)) return `maxSize ${String(maxSize)} is not an integer`;
  if (minSize < SMALLEST_MIN) return `minSize ${minSize} is below ${SMALLEST_MIN}`;
  if (maxSize > LARGEST_MAX) return `maxSize ${maxSize} is above ${LARGEST_MAX} (16 MiB)`;
  if (minSize > avgSize || avgSize > maxSize) {
    return `they must satisfy minSize <= avgSize <= maxSize (got ${minSize}, ${avgSize}, ${maxSize})`;
  }
  const fixedSize = minSize === avgSize && avgSize === maxSize;
  if (!fixedSize && (avgSize & (avgSize - 1)) !== 0) {
    return `avgSize ${avgSize} is not a power of two (only fixed-size chunking, min = avg = max, allows that)`;
  }
  return undefined;
}

export function isFixedSize(options: Readonly<ChunkerOptions>): boolean {
  return options.minSize === options.avgSize && options.avgSize === options.maxSize;
}

/**
 * The cut masks for avgSize = 2^bits, normalisation level 2: the `bits + 2` high bits of the hash
 * before avgSize (a cut 4x less likely per byte), the `bits - 2` high bits from avgSize on (4x more).
 * For 64 KiB: 0xFFFFC000 and 0xFFFC0000. Returned as Int32 bit patterns, matching the hash.
 */
export function cutMasks(avgSize: number): { strict: number; loose: number } {
  const bits = 31 - Math.clz32(avgSize);
  return { strict: highBits(bits + 2), loose: highBits(bits - 2) };
}

function highBits(count: number): number {
  return -1 << (32 - count);
}

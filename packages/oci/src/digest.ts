import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import type { Descriptor, Digest } from './descriptor.js';

const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

export function isDigest(value: string): value is Digest {
  return DIGEST_PATTERN.test(value);
}

export function parseDigest(value: string): Digest {
  if (!isDigest(value)) {
    throw new SplinterError('INVALID_REFERENCE', `not a sha256 digest: ${JSON.stringify(value)}`);
  }
  return value;
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The hex part of a digest, e.g. for `blobs/sha256/<hex>` paths and `sha256-<hex>` tags. */
export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}

export function descriptorFor(mediaType: string, data: Uint8Array): Descriptor {
  return { mediaType, digest: sha256Digest(data), size: data.byteLength };
}

/**
 * Passes bytes through unchanged and fails the stream if they do not add up to `expected`'s size and
 * digest. `offset`/`resumeHash` let a resumed download continue hashing where it stopped.
 */
export class VerifyingStream extends Transform {
  private readonly hash;
  private received: number;

  constructor(
    private readonly expected: Pick<Descriptor, 'digest' | 'size'>,
    resume?: { hash: ReturnType<typeof createHash>; received: number },
  ) {
    super();
    this.hash = resume?.hash ?? createHash('sha256');
    this.received = resume?.received ?? 0;
    // A small blob is checked in full before its consumer attaches (the consumer may still be awaiting
    // a stat or a mkdir). The error stays on the stream (`errored`) and reaches pipeline() or async
    // iteration when they start; without a listener meanwhile, Node would end the process instead.
    this.on('error', () => {});
  }

  /** Bytes seen so far, and a copy of the running hash (for resuming a dropped download). */
  checkpoint(): { hash: ReturnType<typeof createHash>; received: number } {
    return { hash: this.hash.copy(), received: this.received };
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.received += chunk.byteLength;
    if (this.received > this.expected.size) {
      callback(sizeMismatch(this.expected, this.received));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    try {
      assertContentMatches(this.expected, this.received, () => this.hash.digest('hex'));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }
}

/**
 * Throws SIZE_MISMATCH or DIGEST_MISMATCH unless content of `size` bytes whose SHA-256 is `sha256Hex`
 * (asked for only when the size matches) is what `expected` names: the one check every reader of a
 * blob ends with, streaming or not.
 */
export function assertContentMatches(
  expected: Pick<Descriptor, 'digest' | 'size'>,
  size: number,
  sha256Hex: () => string,
): void {
  if (size !== expected.size) throw sizeMismatch(expected, size);
  const actual = `sha256:${sha256Hex()}`;
  if (actual !== expected.digest) {
    throw new SplinterError('DIGEST_MISMATCH', `content of ${expected.digest} hashes to ${actual}`, {
      details: { expected: expected.digest, actual },
    });
  }
}

function sizeMismatch(expected: Pick<Descriptor, 'digest' | 'size'>, received: number): SplinterError {
  return new SplinterError(
    'SIZE_MISMATCH',
    `${expected.digest}: expected ${expected.size} bytes, got ${received}${received > expected.size ? '+' : ''}`,
    { details: { expected: expected.size, received } },
  );
}

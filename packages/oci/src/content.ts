import { Readable, Transform } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import type { Descriptor } from './descriptor.js';
import { VerifyingStream } from './digest.js';
import { readAllLimited } from './read-limited.js';
import type { PushOptions } from './target.js';

export function toReadable(content: Readable | Uint8Array): Readable {
  return content instanceof Uint8Array ? Readable.from([content]) : content;
}

/** Reads pushed content fully (for small stores and manifests), verifying size and digest first. */
export async function readVerified(
  expected: Descriptor,
  content: Readable | Uint8Array,
  limit: number,
): Promise<Buffer> {
  if (expected.size > limit) {
    throw new SplinterError(
      'MANIFEST_TOO_LARGE',
      `${expected.digest} is ${expected.size} bytes, over the ${limit}-byte limit`,
    );
  }
  const source = toReadable(content);
  const verifying = new VerifyingStream(expected);
  source.on('error', (error) => verifying.destroy(error));
  return readAllLimited(source.pipe(verifying), limit);
}

export function blobUnknown(desc: Pick<Descriptor, 'digest'>, where: string): SplinterError {
  return new SplinterError('BLOB_UNKNOWN', `${where} has no blob ${desc.digest}`, {
    details: { digest: desc.digest },
  });
}

/** Throws INVALID_ARGUMENT unless bytes [start, end) are a non-empty range inside the blob `desc` names. */
export function checkRange(desc: Pick<Descriptor, 'digest' | 'size'>, start: number, end: number): void {
  if (
    Number.isSafeInteger(start) &&
    Number.isSafeInteger(end) &&
    start >= 0 &&
    start < end &&
    end <= desc.size
  )
    return;
  throw new SplinterError(
    'INVALID_ARGUMENT',
    `bytes [${start}, ${end}) are not a range of ${desc.digest} (${desc.size} bytes)`,
    { details: { start, end, size: desc.size } },
  );
}

/** Passes bytes through and reports the running total (never switches the stream into flowing mode). */
export function progressStream(onProgress: ((bytesDone: number) => void) | undefined): Transform {
  let done = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      done += chunk.byteLength;
      onProgress?.(done);
      callback(null, chunk);
    },
  });
}

/**
 * Counts bytes against the expected size, for content whose digest is checked elsewhere: upstream, or
 * by a registry when the upload is committed.
 */
export function sizeLimit(expected: Pick<Descriptor, 'digest' | 'size'>): Transform {
  let received = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.byteLength;
      if (received > expected.size)
        return callback(
          new SplinterError('SIZE_MISMATCH', `${expected.digest}: more than ${expected.size} bytes`),
        );
      callback(null, chunk);
    },
    flush(callback) {
      callback(
        received === expected.size
          ? null
          : new SplinterError(
              'SIZE_MISMATCH',
              `${expected.digest}: expected ${expected.size} bytes, got ${received}`,
            ),
      );
    },
  });
}

/**
 * What a store puts between incoming content and its writer: the full digest check, or only the size
 * check when the stream is already verified upstream (a Target's fetch stream, or a download).
 */
export function contentCheck(expected: Descriptor, options?: PushOptions): Transform {
  return options?.verifiedUpstream ? sizeLimit(expected) : new VerifyingStream(expected);
}

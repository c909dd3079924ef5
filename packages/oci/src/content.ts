import { Readable, Transform } from 'node:stream';
import { SplinterError } from '@splinter/errors';
import type { Descriptor } from './descriptor.js';
import { readAllLimited, VerifyingStream } from './digest.js';

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

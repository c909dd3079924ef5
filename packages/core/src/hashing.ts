import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '@splinter/oci';

export interface Hashed {
  digest: Digest;
  size: number;
}

/** Counts and hashes bytes as they pass. */
export class HashingStream extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;

  override _transform(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null, data?: Buffer) => void,
  ): void {
    this.hash.update(chunk);
    this.size += chunk.byteLength;
    callback(null, chunk);
  }

  result(): Hashed {
    return { digest: `sha256:${this.hash.digest('hex')}`, size: this.size };
  }
}

export async function hashFile(path: string): Promise<Hashed> {
  const hashing = new HashingStream();
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hashing, async (source) => {
    for await (const _ of source) {
      // drain
    }
  });
  return hashing.result();
}

/** Streams `source` into a new file at `path`, returning the digest and size of what was written. */
export async function writeHashed(source: Readable, path: string): Promise<Hashed> {
  const hashing = new HashingStream();
  await pipeline(source, hashing, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
  return hashing.result();
}

import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
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

/**
 * Measured on a push of the 1 GiB bench tree into the embedded store, four runs each in turns: 1 MiB
 * peaked at 162-173 MiB of RSS and 4 MiB at 173-191, in the same 8.8-9.2 s.
 */
const HASH_BUFFER_BYTES = 1024 * 1024;
/** Read buffers of finished hashFile calls, kept for the next: a fresh buffer per file stays resident until GC. */
const idleBuffers: Buffer[] = [];

/** SHA-256 of a file, read through a reused buffer (no stream machinery on the hot path). */
export async function hashFile(path: string): Promise<Hashed> {
  const handle = await open(path, 'r');
  const hash = createHash('sha256');
  const buffer = idleBuffers.pop() ?? Buffer.allocUnsafe(HASH_BUFFER_BYTES);
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    idleBuffers.push(buffer);
    await handle.close();
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** Streams `source` into a new file at `path`, returning the digest and size of what was written. */
export async function writeHashed(source: Readable, path: string): Promise<Hashed> {
  const hashing = new HashingStream();
  await pipeline(source, hashing, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
  return hashing.result();
}

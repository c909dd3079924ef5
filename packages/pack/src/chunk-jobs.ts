import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { ChunkerOptions } from '@splintertree/cdc';
import { chunkId, worthDeflating } from './records.js';

/** A worker sends a file's chunks in batches of about this many bytes. */
export const BATCH_BYTES = 1024 * 1024;
/** Batches of one file a worker may have sent and the publisher not yet placed. */
export const CREDITS_PER_JOB = 4;

export type PoolRequest =
  | { type: 'file'; job: number; path: string; size: number; options: ChunkerOptions }
  | { type: 'hash'; job: number; path: string }
  /** The publisher placed a batch: the worker may send one more, and reuse `spare` (a full batch's buffer). */
  | { type: 'credit'; job: number; spare?: ArrayBuffer | undefined };

export interface ChunkBatch {
  type: 'batch';
  job: number;
  /** The chunks' bytes, back to back (the buffer may be longer than they are). */
  bytes: Uint8Array;
  lengths: Uint32Array;
  /** 32 bytes per chunk: its SHA-256. */
  ids: Uint8Array;
  /** 1 where the chunk is worth deflating. */
  deflate: Uint8Array;
  last: boolean;
}

export type PoolResponse =
  | ChunkBatch
  | { type: 'hashed'; job: number; digest: `sha256:${string}` }
  | {
      type: 'error';
      job: number;
      code: string | undefined;
      message: string;
      splinter: boolean;
      details: unknown;
    };

/**
 * Game files are mostly all compressible or all not (archives, textures, audio are compressed
 * already). After four chunks of a file that did not compress, only every sixteenth is tried: the
 * sample costs about 1 s of CPU per GiB otherwise.
 */
export class CompressionHint {
  private incompressible = 0;
  private tried = 0;

  worthTrying(): boolean {
    this.tried += 1;
    return this.incompressible < 4 || this.tried % 16 === 0;
  }

  saw(compressible: boolean): void {
    if (compressible) this.incompressible = 0;
    else this.incompressible += 1;
  }
}

/** What the publisher needs of a chunk besides its bytes: its id, and whether to try deflating it. */
export function chunkFacts(hint: CompressionHint, bytes: Uint8Array): { id: Buffer; deflate: boolean } {
  const deflate = hint.worthTrying() && worthDeflating(bytes);
  hint.saw(deflate);
  return { id: chunkId(bytes), deflate };
}

/** `sha256:<hex>` of a whole file, read 4 MiB at a time. */
export async function hashFile(path: string): Promise<`sha256:${string}`> {
  const file = await open(path, 'r');
  try {
    const hash = createHash('sha256');
    const buffer = new Uint8Array(4 * 1024 * 1024);
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, null);
      if (bytesRead === 0) return `sha256:${hash.digest('hex')}`;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
}

import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { deflateRaw, deflateRawSync, inflateRaw } from 'node:zlib';
import { SplinterError } from '@splintertree/errors';
import { open, seal } from '@splintertree/seal';
import { type ChunkRef, Encoding } from './format.js';

const deflateAsync = promisify(deflateRaw);
const inflateAsync = promisify(inflateRaw);

/**
 * Chunks are compressed one by one (raw DEFLATE, zlib level 4) only where that pays: a 4 KiB sample is
 * deflated first and a chunk whose sample shrinks by less than 10% is stored raw, so incompressible
 * game data (already-compressed archives, textures, audio) costs no compression CPU. A compressed
 * chunk that saves less than 5% is stored raw too. Compression runs on libuv's thread pool.
 */
const SAMPLE_BYTES = 4096;
const LEVEL = 4;

export interface EncodedRecord {
  bytes: Buffer;
  encoding: Encoding;
}

/** True when a chunk is worth deflating: big enough, and a 4 KiB sample shrinks by 10% or more. */
export function worthDeflating(plain: Uint8Array): boolean {
  return plain.byteLength >= 512 && samplePays(plain);
}

/**
 * The record of one chunk: deflated when `deflate` (and only if that saves 5%), sealed under `key`
 * when given. A raw, unsealed record is a view of `plain`.
 */
export async function encodeRecord(
  id: Buffer,
  plain: Uint8Array,
  key: Uint8Array | undefined,
  deflate: boolean,
): Promise<EncodedRecord> {
  if (deflate) {
    const deflated = await deflateAsync(plain, { level: LEVEL });
    if (deflated.byteLength < plain.byteLength * 0.95)
      return finishRecord(id, deflated, Encoding.Deflate, plain.byteLength, key);
  }
  return finishRecord(id, plain, Encoding.Raw, plain.byteLength, key);
}

/** A raw or deflated body as stored: sealed under `key`, bound to the chunk, when given. */
export function finishRecord(
  id: Buffer,
  body: Uint8Array,
  encoding: Encoding,
  plainLength: number,
  key: Uint8Array | undefined,
): EncodedRecord {
  const view = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return { bytes: key ? seal(key, view, recordAssociatedData(id, encoding, plainLength)) : view, encoding };
}

function samplePays(plain: Uint8Array): boolean {
  const sample = plain.subarray(0, Math.min(SAMPLE_BYTES, plain.byteLength));
  return deflateRawSync(sample, { level: 1 }).byteLength < sample.byteLength * 0.9;
}

/**
 * A record's associated data: label, chunk id, encoding and plain length. A sealed record moved to
 * another chunk's place (in the same or another pack) does not open.
 */
export function recordAssociatedData(id: Buffer, encoding: Encoding, plainLength: number): Buffer {
  const label = Buffer.from('splinter record v1\0', 'latin1');
  const tail = Buffer.alloc(5);
  tail.writeUInt8(encoding, 0);
  tail.writeUInt32BE(plainLength, 1);
  return Buffer.concat([label, id, tail]);
}

/**
 * The chunk a record holds, checked: opened with `key` if its pack is sealed, inflated to at most its
 * plain length, and its SHA-256 compared with the chunk id. DIGEST_MISMATCH, SIZE_MISMATCH or
 * DECRYPTION_FAILED otherwise.
 */
export async function decodeRecord(
  ref: ChunkRef,
  stored: Buffer,
  key: Uint8Array | undefined,
): Promise<Buffer> {
  const name = `chunk ${ref.id.toString('hex')}`;
  if (stored.byteLength !== ref.storedLength) {
    throw new SplinterError(
      'SIZE_MISMATCH',
      `${name}: record is ${stored.byteLength} bytes, expected ${ref.storedLength}`,
    );
  }
  let body = key
    ? open(key, stored, recordAssociatedData(ref.id, ref.encoding, ref.plainLength), name)
    : stored;
  if (ref.encoding === Encoding.Deflate) {
    try {
      body = await inflateAsync(body, { maxOutputLength: Math.max(1, ref.plainLength) });
    } catch (error) {
      // Bytes that do not inflate are not the chunk the id names, whoever damaged them.
      throw new SplinterError('DIGEST_MISMATCH', `${name}: record is damaged (does not inflate)`, {
        cause: error,
      });
    }
  }
  if (body.byteLength !== ref.plainLength) {
    throw new SplinterError(
      'SIZE_MISMATCH',
      `${name}: holds ${body.byteLength} bytes, expected ${ref.plainLength}`,
    );
  }
  if (!chunkId(body).equals(ref.id))
    throw new SplinterError('DIGEST_MISMATCH', `${name}: content does not match its id`);
  return body;
}

export function chunkId(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

const FILE_DIGEST_LABEL = Buffer.from('splinter file v1\0', 'latin1');

/**
 * A file's digest: SHA-256 over a label and its chunk ids in order. It names the content as surely as
 * a hash of the bytes (each id is one), and costs 32 bytes of hashing per chunk instead of a second
 * pass over every byte, on push and on install.
 */
export function fileDigest(ids: readonly Buffer[]): Buffer {
  const hash = createHash('sha256').update(FILE_DIGEST_LABEL);
  for (const id of ids) hash.update(id);
  return hash.digest();
}

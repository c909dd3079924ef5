import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import { digestHex } from '@splintertree/oci';
import { open as openSealed } from '@splintertree/seal';
import { fetchRecords, packOf, type RecordSourceOptions, readRecordHealing } from './fetch-records.js';
import { ChunkedMediaType, type ChunkRef, decodeRoot, type IndexRoot, MAX_ROOT_BYTES } from './format.js';
import { decodeIndex, type IndexEntry } from './index-codec.js';
import { decodeRecord } from './records.js';

/** Patch keys by key id: what the launcher API released for the head's chain. */
export type KeyRing = ReadonlyMap<string, Uint8Array>;

const ROOT_LABEL = Buffer.from('splinter root v1\0', 'latin1');

/** The associated data of a sealed root: a root cannot be swapped for another kind of sealed object. */
export function rootAssociatedData(): Buffer {
  return ROOT_LABEL;
}

/** Parses a root blob of either media type; a sealed one needs its key (KEY_REQUIRED otherwise). */
export function openRoot(
  bytes: Uint8Array,
  mediaType: string,
  keyId: string | undefined,
  keys: KeyRing,
): IndexRoot {
  if (bytes.byteLength > MAX_ROOT_BYTES) {
    throw new SplinterError('ARCHIVE_INVALID', `the index root is larger than ${MAX_ROOT_BYTES} bytes`);
  }
  if (mediaType === ChunkedMediaType.Root) return decodeRoot(bytes);
  if (mediaType !== ChunkedMediaType.SealedRoot) {
    throw new SplinterError(
      'UNSUPPORTED_MEDIA_TYPE',
      `the first layer is ${mediaType}, not a splinter index root`,
    );
  }
  const key = keyId === undefined ? undefined : keys.get(keyId);
  if (!key) {
    throw new SplinterError(
      'KEY_REQUIRED',
      `this version is encrypted (preload) with key ${keyId ?? '(unnamed)'}: it opens once the key is released`,
    );
  }
  return decodeRoot(openSealed(key, bytes, rootAssociatedData(), 'the index root'));
}

/** Keys for every sealed pack among `refs`' packs, or KEY_REQUIRED naming the first one missing. */
export function keyForPack(root: IndexRoot, keys: KeyRing): (ref: ChunkRef) => Uint8Array | undefined {
  const packs = new Map(root.packs.map((p) => [p.number, p]));
  return (ref) => {
    const keyId = packOf(packs, ref).keyId;
    if (keyId === undefined) return undefined;
    const key = keys.get(keyId);
    if (!key)
      throw new SplinterError(
        'KEY_REQUIRED',
        `pack ${ref.pack} is sealed with key ${keyId}, which was not given`,
      );
    return key;
  };
}

/**
 * Decoded indexes kept on the client (the plaintext index stream under its digest): what the publisher
 * reuses as a base and what the installer compares the installed tree with, without a download.
 */
export class IndexStore {
  constructor(private readonly dir: string) {}

  async get(digest: string): Promise<Buffer | undefined> {
    const bytes = await readFile(join(this.dir, digestHex(digest as `sha256:${string}`))).catch(
      () => undefined,
    );
    if (!bytes || `sha256:${createHash('sha256').update(bytes).digest('hex')}` !== digest) return undefined;
    return bytes;
  }

  async put(digest: string, bytes: Buffer): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const path = join(this.dir, digestHex(digest as `sha256:${string}`));
    const temporary = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    await writeFile(temporary, bytes, { mode: 0o600, flush: true });
    await rename(temporary, path);
  }
}

export interface ReadIndexOptions extends Omit<RecordSourceOptions, 'packs'> {
  keys: KeyRing;
  store?: IndexStore | undefined;
}

/** A version's entries: from the index store, or its index records (fetched as needed), checked. */
export async function readIndex(root: IndexRoot, options: ReadIndexOptions): Promise<IndexEntry[]> {
  const stored = await options.store?.get(root.index.digest);
  if (stored) return decodeIndex(stored);
  const packs = new Map(root.packs.map((p) => [p.number, p]));
  await fetchRecords(root.index.chunks, { ...options, packs });
  const keyOf = keyForPack(root, options.keys);
  const parts: Buffer[] = [];
  for (const ref of root.index.chunks) {
    parts.push(
      await readRecordHealing(ref, { ...options, packs }, (stored) => decodeRecord(ref, stored, keyOf(ref))),
    );
  }
  const bytes = Buffer.concat(parts);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (bytes.byteLength !== root.index.size || digest !== root.index.digest) {
    throw new SplinterError('DIGEST_MISMATCH', `the index is ${digest}, the root names ${root.index.digest}`);
  }
  const entries = decodeIndex(bytes);
  await options.store?.put(digest, bytes);
  return entries;
}

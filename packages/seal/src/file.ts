import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { SplinterError } from '@splinter/errors';
import { assertContentMatches, type Descriptor } from '@splinter/oci';
import { assertKey, NONCE_BYTES, SEAL_OVERHEAD, TAG_BYTES, tagMismatch, truncated } from './format.js';
import { createOpenGcm, createSealGcm, type FileResult, nativeAddonFor, type SealBackend } from './gcm.js';

/** The fallback's read size, as the addon's buffer. */
const FALLBACK_READ_BYTES = 256 * 1024;

export interface SealFileOptions {
  /** For known-answer tests only: a fixed nonce. Production code must let each blob draw a random one. */
  nonce?: Uint8Array;
  /** For tests and benchmarks: who runs AES-GCM (default: the native addon when it is built). */
  backend?: SealBackend;
}

export interface OpenFileOptions {
  /**
   * The blob's digest and size: checked over the sealed bytes in the same pass that decrypts them,
   * failing with DIGEST_MISMATCH or SIZE_MISMATCH before a tag mismatch is considered.
   */
  expected?: Pick<Descriptor, 'digest' | 'size'>;
  /** For tests and benchmarks: who runs AES-GCM (default: the native addon when it is built). */
  backend?: SealBackend;
}

/**
 * Seals the file at `source` into a new file at `destination` (which must not exist, created 0600), returning the
 * sealed blob's digest and size. With the native addon the whole pass (read, encipher, hash, write)
 * runs on a libuv worker thread through one 256 KiB buffer. A failure removes the destination.
 */
export async function sealFile(
  source: string,
  destination: string,
  key: Uint8Array,
  options: SealFileOptions = {},
): Promise<{ digest: `sha256:${string}`; size: number }> {
  assertKey(key);
  const nonce = options.nonce ?? randomBytes(NONCE_BYTES);
  if (nonce.byteLength !== NONCE_BYTES)
    throw new SplinterError('INVALID_ARGUMENT', `a nonce is ${NONCE_BYTES} bytes`);
  const addon = nativeAddonFor(options.backend);
  const input = await open(source, 'r');
  try {
    const result = await intoNewFile(destination, async (output) => {
      if (addon) return addon.sealFile(input.fd, output.fd, key, nonce).catch(withErrnoCode);
      return sealThroughNodeCrypto(input, output, key, nonce);
    });
    return { digest: `sha256:${result.sha256}`, size: result.sealedBytes };
  } finally {
    await input.close();
  }
}

/**
 * Opens the sealed blob file at `source` into a new file at `destination` (which must not exist, created
 * 0600: the caller sets the mode it wants once the bytes are verified), or,
 * with `destination` undefined, only checks that it opens. GCM authenticates at the end, so the
 * destination holds unverified bytes until this resolves: a blob that is altered, truncated, not what
 * `expected` names, or sealed under another key fails with DIGEST_MISMATCH, SIZE_MISMATCH or
 * DECRYPTION_FAILED, and the destination is removed. Returns the plaintext's size.
 */
export async function openSealedFile(
  source: string,
  destination: string | undefined,
  key: Uint8Array,
  options: OpenFileOptions = {},
): Promise<{ size: number }> {
  assertKey(key);
  const addon = nativeAddonFor(options.backend);
  const input = await open(source, 'r');
  const hash = options.expected !== undefined;
  const run = (output: FileHandle | undefined): Promise<FileResult> =>
    addon
      ? addon.openFile(input.fd, output?.fd ?? -1, key, hash).catch(withErrnoCode)
      : openThroughNodeCrypto(input, output, key, hash);
  const checked = async (output: FileHandle | undefined) => {
    const result = await run(output);
    if (options.expected) assertContentMatches(options.expected, result.sealedBytes, () => result.sha256!);
    if (!result.authentic) {
      throw result.sealedBytes < SEAL_OVERHEAD ? truncated() : tagMismatch();
    }
    return { size: result.plainBytes };
  };
  try {
    return destination === undefined ? await checked(undefined) : await intoNewFile(destination, checked);
  } finally {
    await input.close();
  }
}

/** The addon reports a failed system call with its errno; name it as node's fs does (ENOSPC, EIO, ...). */
function withErrnoCode(error: Error & { errno?: number; code?: string }): never {
  const name = Object.entries(osConstants.errno).find(([, value]) => value === error.errno)?.[0];
  if (name) error.code = name;
  throw error;
}

/** Runs `write` against a file created exclusively at `path`; removes the file if anything fails. */
async function intoNewFile<T>(path: string, write: (output: FileHandle) => Promise<T>): Promise<T> {
  const output = await open(path, 'wx', 0o600);
  try {
    const result = await write(output);
    await output.close();
    return result;
  } catch (error) {
    await output.close().catch(() => undefined);
    await rm(path, { force: true });
    throw error;
  }
}

/**
 * The bytes of a file in [start, end), FALLBACK_READ_BYTES at a time through one buffer: each piece is
 * valid until the next is asked for (node:crypto's update copies what it keeps).
 */
async function* pieces(input: FileHandle, start: number, end: number): AsyncGenerator<Buffer> {
  const buffer = Buffer.allocUnsafe(Math.min(FALLBACK_READ_BYTES, end - start));
  for (let offset = start; offset < end; ) {
    const { bytesRead } = await input.read(buffer, 0, Math.min(buffer.byteLength, end - offset), offset);
    if (bytesRead === 0)
      throw Object.assign(new Error('read: the file shrank while it was read'), { code: 'EIO' });
    offset += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/** Writes and forgets what the cipher produced for one piece. */
async function writeAll(output: FileHandle | undefined, outputs: Buffer[]): Promise<void> {
  if (output) for (const piece of outputs) await output.write(piece);
  outputs.length = 0;
}

/** The node:crypto fallback of the addon's sealFile: the same pass, on the main thread. */
async function sealThroughNodeCrypto(
  input: FileHandle,
  output: FileHandle,
  key: Uint8Array,
  nonce: Uint8Array,
): Promise<FileResult> {
  const gcm = createSealGcm(key, nonce, 'node:crypto');
  const hash = createHash('sha256').update(nonce);
  await output.write(nonce);
  const outputs: Buffer[] = [];
  let plainBytes = 0;
  for await (const piece of pieces(input, 0, (await input.stat()).size)) {
    plainBytes += piece.byteLength;
    gcm.update(piece, (sealed) => {
      hash.update(sealed);
      outputs.push(sealed);
    });
    await writeAll(output, outputs);
  }
  const tag = gcm.tag();
  hash.update(tag);
  await output.write(tag);
  return { sealedBytes: plainBytes + SEAL_OVERHEAD, plainBytes, authentic: true, sha256: hash.digest('hex') };
}

/** The node:crypto fallback of the addon's openFile: the same pass and answers, on the main thread. */
async function openThroughNodeCrypto(
  input: FileHandle,
  output: FileHandle | undefined,
  key: Uint8Array,
  wantHash: boolean,
): Promise<FileResult> {
  const { size } = await input.stat();
  const hash = wantHash ? createHash('sha256') : undefined;
  if (size < SEAL_OVERHEAD) {
    for await (const piece of pieces(input, 0, size)) hash?.update(piece);
    return {
      sealedBytes: size,
      plainBytes: 0,
      authentic: false,
      ...(hash ? { sha256: hash.digest('hex') } : {}),
    };
  }
  const nonce = Buffer.alloc(NONCE_BYTES);
  const tag = Buffer.alloc(TAG_BYTES);
  await input.read(nonce, 0, NONCE_BYTES, 0);
  await input.read(tag, 0, TAG_BYTES, size - TAG_BYTES);
  hash?.update(nonce);
  const gcm = createOpenGcm(key, nonce, 'node:crypto');
  const outputs: Buffer[] = [];
  for await (const piece of pieces(input, NONCE_BYTES, size - TAG_BYTES)) {
    hash?.update(piece);
    gcm.update(piece, (plain) => outputs.push(plain));
    await writeAll(output, outputs);
  }
  hash?.update(tag);
  return {
    sealedBytes: size,
    plainBytes: size - SEAL_OVERHEAD,
    authentic: gcm.verify(tag),
    ...(hash ? { sha256: hash.digest('hex') } : {}),
  };
}

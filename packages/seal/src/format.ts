import { createHash, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { SplinterError } from '@splinter/errors';
import { createOpenGcm, createSealGcm, type OpenGcm, type SealBackend } from './gcm.js';

/**
 * The preload blob format: `12-byte random nonce | AES-256-GCM ciphertext | 16-byte tag`, no
 * associated data, one random 32-byte key per patch and a fresh nonce per blob — anyone holding the
 * key can open a blob with standard AES-GCM.
 */
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const KEY_BYTES = 32;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** Our own media type: not ocicrypt's `+encrypted`, which other tools would try to decrypt. */
export const SEALED_LAYER_MEDIA_TYPE = 'application/vnd.splintertree.layer.v1.sealed';
/** Manifest and layer annotation naming the key a sealed layer needs (never the key itself). */
export const KEY_ID_ANNOTATION = 'dev.splintertree.seal.key-id';

export function sealedSize(plainSize: number): number {
  return plainSize + SEAL_OVERHEAD;
}

export function generatePatchKey(): Uint8Array {
  return new Uint8Array(randomBytes(KEY_BYTES));
}

/**
 * A public, stable name for a key: SHA-256 over a domain-separation label and the key. It identifies
 * which key a layer needs without revealing the key (a preimage of SHA-256 over 256 random bits).
 */
export function keyIdOf(key: Uint8Array): string {
  assertKey(key);
  return `sha256:${createHash('sha256').update('splinter preload key id v1\0').update(key).digest('hex')}`;
}

export function assertKey(key: Uint8Array): void {
  if (key.byteLength !== KEY_BYTES) {
    throw new SplinterError('INVALID_ARGUMENT', `a patch key is ${KEY_BYTES} bytes, got ${key.byteLength}`);
  }
}

export interface SealOptions {
  /** For known-answer tests only: a fixed nonce. Production code must let each blob draw a random one. */
  nonce?: Uint8Array;
  /** For tests and benchmarks: who runs AES-GCM (default: the native addon when it is built). */
  backend?: SealBackend;
}

export interface OpenOptions {
  /** For tests and benchmarks: who runs AES-GCM (default: the native addon when it is built). */
  backend?: SealBackend;
}

/** Encrypts a stream into the preload format; memory stays at one chunk. */
export function createSealStream(key: Uint8Array, options: SealOptions = {}): Transform {
  assertKey(key);
  const nonce = options.nonce ?? randomBytes(NONCE_BYTES);
  if (nonce.byteLength !== NONCE_BYTES)
    throw new SplinterError('INVALID_ARGUMENT', `a nonce is ${NONCE_BYTES} bytes`);
  const gcm = createSealGcm(key, nonce, options.backend);
  let started = false;
  const stream: Transform = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      if (!started) {
        started = true;
        this.push(Buffer.from(nonce));
      }
      gcm.update(chunk, push);
      callback();
    },
    flush(callback: TransformCallback) {
      if (!started) this.push(Buffer.from(nonce));
      callback(null, gcm.tag());
    },
  });
  const push = (output: Buffer) => stream.push(output);
  return stream;
}

/**
 * Decrypts the preload format. The trailing 16 bytes (the tag) are held back across chunks. GCM
 * authenticates only at the end: bytes this stream emits are UNVERIFIED until it ends without error,
 * so callers must write them to staging and let them into place only after a clean end
 * (core's pull unpacks into a staging folder and renames it only when every layer verified).
 */
export function createOpenStream(key: Uint8Array, options: OpenOptions = {}): Transform {
  assertKey(key);
  let header = Buffer.alloc(0);
  let gcm: OpenGcm | undefined;
  let held = Buffer.alloc(0);
  const stream: Transform = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      let data = chunk;
      if (!gcm) {
        // Only a nonce split across chunks is gathered, not the whole first chunk (an allocation and a
        // copy per blob).
        const start = header.byteLength > 0 ? Buffer.concat([header, data]) : data;
        if (start.byteLength < NONCE_BYTES) {
          header = Buffer.from(start);
          return callback();
        }
        gcm = createOpenGcm(key, start.subarray(0, NONCE_BYTES), options.backend);
        data = start.subarray(NONCE_BYTES);
        header = Buffer.alloc(0);
      }
      if (data.byteLength < TAG_BYTES) {
        // A short chunk: the tag may straddle it and `held` (at most 32 bytes to shuffle).
        const combined = Buffer.concat([held, data]);
        const cut = Math.max(0, combined.byteLength - TAG_BYTES);
        gcm.update(combined.subarray(0, cut), push);
        held = combined.subarray(cut);
        return callback();
      }
      // The tag can only be the last TAG_BYTES of this chunk, so all of `held` is ciphertext.
      const end = data.byteLength - TAG_BYTES;
      gcm.update(held, push);
      gcm.update(data.subarray(0, end), push);
      held = Buffer.from(data.subarray(end));
      callback();
    },
    flush(callback: TransformCallback) {
      if (!gcm || held.byteLength < TAG_BYTES) return callback(truncated());
      if (!gcm.verify(held)) return callback(tagMismatch());
      callback();
    },
  });
  const push = (output: Buffer) => stream.push(output);
  return stream;
}

export function truncated(): SplinterError {
  return new SplinterError(
    'DECRYPTION_FAILED',
    'sealed layer does not open with this key: truncated (shorter than nonce and tag)',
  );
}

export function tagMismatch(): SplinterError {
  return new SplinterError(
    'DECRYPTION_FAILED',
    'sealed layer does not open with this key: authentication tag mismatch (wrong key or altered bytes)',
  );
}

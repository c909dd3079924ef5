import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { SplinterError } from '@splintertree/errors';

/**
 * The preload sealing format: `12-byte random nonce | AES-256-GCM ciphertext | 16-byte tag`, one
 * random 32-byte key per patch and a fresh nonce per sealed object. Every object is sealed with
 * associated data naming what it is (a chunk record is bound to its chunk id, an index root to its
 * label), so a sealed object moved into another's place fails to open. Anyone holding the key opens
 * it with standard AES-GCM; nothing here needs native code.
 */
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const KEY_BYTES = 32;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

export function sealedSize(plainSize: number): number {
  return plainSize + SEAL_OVERHEAD;
}

export function generatePatchKey(): Uint8Array {
  return new Uint8Array(randomBytes(KEY_BYTES));
}

/**
 * A public, stable name for a key: SHA-256 over a domain-separation label and the key. It identifies
 * which key a sealed object needs without revealing the key (a preimage of SHA-256 over 256 random bits).
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

/** Seals `plain` under `key`, bound to `associatedData`. `nonce` is for known-answer tests only. */
export function seal(
  key: Uint8Array,
  plain: Uint8Array,
  associatedData: Uint8Array,
  nonce: Uint8Array = randomBytes(NONCE_BYTES),
): Buffer {
  assertKey(key);
  if (nonce.byteLength !== NONCE_BYTES) {
    throw new SplinterError('INVALID_ARGUMENT', `a nonce is ${NONCE_BYTES} bytes, got ${nonce.byteLength}`);
  }
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(associatedData);
  const out = Buffer.allocUnsafe(plain.byteLength + SEAL_OVERHEAD);
  out.set(nonce, 0);
  let at = NONCE_BYTES + cipher.update(plain).copy(out, NONCE_BYTES);
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

/**
 * Opens a sealed object: the plaintext, or DECRYPTION_FAILED when the key, the associated data or
 * any byte is wrong (what says which object, for the message).
 */
export function open(key: Uint8Array, sealed: Uint8Array, associatedData: Uint8Array, what: string): Buffer {
  assertKey(key);
  if (sealed.byteLength < SEAL_OVERHEAD) {
    throw new SplinterError('DECRYPTION_FAILED', `${what} is shorter than a sealed object's overhead`);
  }
  const view = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const decipher = createDecipheriv('aes-256-gcm', key, view.subarray(0, NONCE_BYTES));
  decipher.setAAD(associatedData);
  decipher.setAuthTag(view.subarray(view.byteLength - TAG_BYTES));
  const body = view.subarray(NONCE_BYTES, view.byteLength - TAG_BYTES);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new SplinterError(
      'DECRYPTION_FAILED',
      `${what} does not open with key ${keyIdOf(key)}: wrong key, or the bytes were altered or swapped`,
    );
  }
}

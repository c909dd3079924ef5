import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { SplinterError } from '@splinter/errors';
import { KEY_BYTES, NONCE_BYTES, TAG_BYTES } from './format.js';

/**
 * Patch keys at rest: `12-byte random nonce | AES-256-GCM(KEK, patch key) | 16-byte tag`, with the
 * associated data `WRAP_LABEL || key id`, so a wrapped key moved onto another patch's row does not open.
 */
export const WRAP_LABEL = 'splinter wrapped patch key v1\0';
export const WRAPPED_KEY_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES;

/** 32 bytes written as base64 (standard or url-safe, padded or not) or as 64 hex digits; else undefined. */
export function decodeKey32(text: string): Uint8Array | undefined {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return new Uint8Array(Buffer.from(trimmed, 'hex'));
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)) {
    const bytes = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.byteLength === KEY_BYTES) return new Uint8Array(bytes);
  }
  return undefined;
}

/** A public fingerprint of a key-encryption key, stored beside every key it wraps (never the KEK). */
export function kekIdOf(kek: Uint8Array): string {
  assertKek(kek);
  return `sha256:${createHash('sha256').update('splinter kek id v1\0').update(kek).digest('hex')}`;
}

function assertKek(kek: Uint8Array): void {
  if (kek.byteLength !== KEY_BYTES) {
    throw new SplinterError(
      'KEK_INVALID',
      `a key-encryption key is ${KEY_BYTES} bytes, got ${kek.byteLength}`,
    );
  }
}

function associatedData(keyId: string): Buffer {
  return Buffer.from(WRAP_LABEL + keyId, 'utf8');
}

export function wrapKey(kek: Uint8Array, key: Uint8Array, keyId: string): Uint8Array {
  assertKek(kek);
  if (key.byteLength !== KEY_BYTES) {
    throw new SplinterError('INVALID_ARGUMENT', `a patch key is ${KEY_BYTES} bytes, got ${key.byteLength}`);
  }
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  cipher.setAAD(associatedData(keyId));
  const body = Buffer.concat([cipher.update(key), cipher.final()]);
  return new Uint8Array(Buffer.concat([nonce, body, cipher.getAuthTag()]));
}

/** Opens a wrapped key; a wrong KEK or an altered (or moved) row is KEK_MISMATCH. */
export function unwrapKey(kek: Uint8Array, wrapped: Uint8Array, keyId: string): Uint8Array {
  assertKek(kek);
  if (wrapped.byteLength !== WRAPPED_KEY_BYTES) {
    throw new SplinterError(
      'KEK_MISMATCH',
      `wrapped key for ${keyId} is ${wrapped.byteLength} bytes, expected ${WRAPPED_KEY_BYTES}`,
    );
  }
  const bytes = Buffer.from(wrapped);
  const decipher = createDecipheriv('aes-256-gcm', kek, bytes.subarray(0, NONCE_BYTES));
  decipher.setAAD(associatedData(keyId));
  decipher.setAuthTag(bytes.subarray(NONCE_BYTES + KEY_BYTES));
  try {
    return new Uint8Array(
      Buffer.concat([
        decipher.update(bytes.subarray(NONCE_BYTES, NONCE_BYTES + KEY_BYTES)),
        decipher.final(),
      ]),
    );
  } catch (error) {
    throw new SplinterError(
      'KEK_MISMATCH',
      `the wrapped key for ${keyId} does not open with this KEK (${kekIdOf(kek)})`,
      { cause: error },
    );
  }
}

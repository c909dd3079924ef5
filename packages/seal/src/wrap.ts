import { createHash } from 'node:crypto';
import { SplinterError } from '@splintertree/errors';
import { KEY_BYTES, open, SEAL_OVERHEAD, seal } from './format.js';

/**
 * Patch keys at rest: `12-byte random nonce | AES-256-GCM(KEK, patch key) | 16-byte tag`, with the
 * associated data `WRAP_LABEL || key id`, so a wrapped key moved onto another patch's row does not open.
 */
export const WRAP_LABEL = 'splinter wrapped patch key v1\0';
export const WRAPPED_KEY_BYTES = KEY_BYTES + SEAL_OVERHEAD;

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
  return new Uint8Array(seal(kek, key, associatedData(keyId)));
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
  try {
    return new Uint8Array(open(kek, wrapped, associatedData(keyId), `wrapped key ${keyId}`));
  } catch (error) {
    throw new SplinterError(
      'KEK_MISMATCH',
      `the wrapped key for ${keyId} does not open with this KEK (${kekIdOf(kek)})`,
      { cause: error },
    );
  }
}

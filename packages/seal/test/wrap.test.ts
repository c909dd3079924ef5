import { randomBytes, webcrypto } from 'node:crypto';
import {
  decodeKey32,
  generatePatchKey,
  kekIdOf,
  keyIdOf,
  unwrapKey,
  WRAP_LABEL,
  WRAPPED_KEY_BYTES,
  wrapKey,
} from '@splintertree/seal';
import { errorCodeOf } from '@splintertree/testkit';
import { describe, expect, it } from 'vitest';

describe('patch keys wrapped by the KEK', () => {
  it('is nonce | AES-256-GCM(KEK, key) | tag with the label and key id as associated data (WebCrypto opens it)', async () => {
    const kek = generatePatchKey();
    const key = generatePatchKey();
    const keyId = keyIdOf(key);
    const wrapped = wrapKey(kek, key, keyId);
    expect(wrapped.byteLength).toBe(WRAPPED_KEY_BYTES);
    const cryptoKey = await webcrypto.subtle.importKey('raw', kek, 'AES-GCM', false, ['decrypt']);
    const opened = await webcrypto.subtle.decrypt(
      { name: 'AES-GCM', iv: wrapped.subarray(0, 12), additionalData: Buffer.from(WRAP_LABEL + keyId) },
      cryptoKey,
      wrapped.subarray(12),
    );
    expect(Buffer.from(opened).equals(Buffer.from(key))).toBe(true);
    expect(Buffer.from(unwrapKey(kek, wrapped, keyId)).equals(Buffer.from(key))).toBe(true);
  });

  it('refuses another KEK, another key id and altered bytes with KEK_MISMATCH', async () => {
    const kek = generatePatchKey();
    const key = generatePatchKey();
    const keyId = keyIdOf(key);
    const wrapped = wrapKey(kek, key, keyId);
    const altered = Uint8Array.from(wrapped);
    altered[20]! ^= 1;
    const attempts = [
      () => unwrapKey(generatePatchKey(), wrapped, keyId),
      () => unwrapKey(kek, wrapped, keyIdOf(generatePatchKey())),
      () => unwrapKey(kek, altered, keyId),
      () => unwrapKey(kek, wrapped.subarray(1), keyId),
    ];
    for (const attempt of attempts)
      expect(await errorCodeOf(Promise.resolve().then(attempt))).toBe('KEK_MISMATCH');
  });

  it('draws a fresh nonce for every wrap', () => {
    const kek = generatePatchKey();
    const key = generatePatchKey();
    const a = wrapKey(kek, key, keyIdOf(key));
    const b = wrapKey(kek, key, keyIdOf(key));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it('reads 32-byte keys as base64, base64url or hex and nothing else', () => {
    const bytes = randomBytes(32);
    for (const text of [
      bytes.toString('base64'),
      bytes.toString('base64').replace(/=$/, ''),
      bytes.toString('base64url'),
      bytes.toString('hex'),
      `  ${bytes.toString('hex').toUpperCase()}\n`,
    ]) {
      expect(Buffer.from(decodeKey32(text)!).equals(bytes), text).toBe(true);
    }
    for (const text of [
      '',
      'abc',
      randomBytes(31).toString('base64'),
      randomBytes(33).toString('hex'),
      'z'.repeat(64),
    ]) {
      expect(decodeKey32(text), text).toBeUndefined();
    }
  });

  it('fingerprints a KEK without revealing it, apart from patch key ids', () => {
    const kek = generatePatchKey();
    expect(kekIdOf(kek)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(kekIdOf(kek)).not.toBe(keyIdOf(kek));
    expect(kekIdOf(kek)).not.toContain(Buffer.from(kek).toString('hex'));
  });
});

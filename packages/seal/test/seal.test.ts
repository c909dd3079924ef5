import { webcrypto } from 'node:crypto';
import { generatePatchKey, NONCE_BYTES, open, SEAL_OVERHEAD, seal, TAG_BYTES } from '@splintertree/seal';
import { errorCodeOf } from '@splintertree/testkit';
import { describe, expect, it } from 'vitest';

const codeOf = (run: () => unknown) => errorCodeOf(Promise.resolve().then(run));

describe('sealed objects', () => {
  const aad = Buffer.from('splinter test v1\0object-a');

  it('is nonce | AES-256-GCM ciphertext | tag that WebCrypto opens with the same associated data', async () => {
    const key = generatePatchKey();
    const plain = Buffer.from('the content of a chunk record');
    const sealed = seal(key, plain, aad);
    expect(sealed.byteLength).toBe(plain.byteLength + SEAL_OVERHEAD);
    const cryptoKey = await webcrypto.subtle.importKey('raw', key, 'AES-GCM', false, ['decrypt']);
    const opened = await webcrypto.subtle.decrypt(
      { name: 'AES-GCM', iv: sealed.subarray(0, NONCE_BYTES), additionalData: aad, tagLength: TAG_BYTES * 8 },
      cryptoKey,
      sealed.subarray(NONCE_BYTES),
    );
    expect(Buffer.from(opened).equals(plain)).toBe(true);
    expect(open(key, sealed, aad, 'object a').equals(plain)).toBe(true);
  });

  it('draws a fresh nonce for every object', () => {
    const key = generatePatchKey();
    const a = seal(key, Buffer.from('same'), aad);
    const b = seal(key, Buffer.from('same'), aad);
    expect(a.subarray(0, NONCE_BYTES).equals(b.subarray(0, NONCE_BYTES))).toBe(false);
  });

  it('refuses another key, other associated data (a swapped object), a flipped bit and a short object', async () => {
    const key = generatePatchKey();
    const sealed = seal(key, Buffer.alloc(1000, 7), aad);
    expect(await codeOf(() => open(generatePatchKey(), sealed, aad, 'x'))).toBe('DECRYPTION_FAILED');
    expect(await codeOf(() => open(key, sealed, Buffer.from('splinter test v1\0object-b'), 'x'))).toBe(
      'DECRYPTION_FAILED',
    );
    const flipped = Buffer.from(sealed);
    flipped[500] = flipped[500]! ^ 1;
    expect(await codeOf(() => open(key, flipped, aad, 'x'))).toBe('DECRYPTION_FAILED');
    expect(await codeOf(() => open(key, sealed.subarray(0, 20), aad, 'x'))).toBe('DECRYPTION_FAILED');
  });
});

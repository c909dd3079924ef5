import { randomBytes, webcrypto } from 'node:crypto';
import { Readable } from 'node:stream';
import { isSplinterError } from '@splinter/errors';
import {
  createOpenStream,
  createSealStream,
  generatePatchKey,
  keyIdOf,
  SEAL_OVERHEAD,
  type SealBackend,
  sealBackend,
  sealedSize,
} from '@splinter/seal';
import { describe, expect, it } from 'vitest';

async function through(stream: NodeJS.ReadWriteStream, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const source = Readable.from(chunks);
  const piped = source.pipe(stream as unknown as NodeJS.WritableStream) as unknown as AsyncIterable<Buffer>;
  for await (const chunk of piped) out.push(chunk);
  return Buffer.concat(out);
}

// AES-256 GCM test cases 13-15 (96-bit IV, no AAD) from McGrew & Viega, "The Galois/Counter Mode of
// Operation", the vectors NIST's GCM validation lists: an independent pin on our byte layout.
const KNOWN_ANSWERS = [
  {
    name: 'case 13 (empty plaintext)',
    key: '00'.repeat(32),
    nonce: '00'.repeat(12),
    plain: '',
    cipher: '',
    tag: '530f8afbc74536b9a963b4f1c4cb738b',
  },
  {
    name: 'case 14 (one zero block)',
    key: '00'.repeat(32),
    nonce: '00'.repeat(12),
    plain: '00'.repeat(16),
    cipher: 'cea7403d4d606b6e074ec5d3baf39d18',
    tag: 'd0d1c8a799996bf0265b98b5d48ab919',
  },
  {
    name: 'case 15 (four blocks)',
    key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
    nonce: 'cafebabefacedbaddecaf888',
    plain:
      'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255',
    cipher:
      '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad',
    tag: 'b094dac5d93471bdec1a502270e3cc6c',
  },
];

const native = sealBackend();
const BACKENDS: SealBackend[] = ['native', 'node:crypto'];

it.runIf(process.env.CI === 'true')('runs on the native AES-GCM addon under CI', () => {
  expect(native, 'CI must build packages/seal/native (node-gyp needs a C compiler, make, python3)').toEqual({
    backend: 'native',
  });
});

for (const backend of BACKENDS) {
  describe.skipIf(backend === 'native' && native.backend !== 'native')(
    `preload format (${backend}): nonce | AES-256-GCM ciphertext | tag`,
    () => {
      const seal = (key: Uint8Array, plain: Buffer, nonce?: Buffer) =>
        through(createSealStream(key, { nonce, backend }), plain.byteLength ? [plain] : []);
      const open = (key: Uint8Array, chunks: Buffer[]) => through(createOpenStream(key, { backend }), chunks);

      async function openError(key: Uint8Array, sealed: Buffer): Promise<unknown> {
        return open(key, [sealed]).then(
          () => undefined,
          (error: unknown) => error,
        );
      }

      for (const vector of KNOWN_ANSWERS) {
        it(`matches the published vector: ${vector.name}`, async () => {
          const key = Buffer.from(vector.key, 'hex');
          const sealed = await seal(key, Buffer.from(vector.plain, 'hex'), Buffer.from(vector.nonce, 'hex'));
          expect(sealed.toString('hex')).toBe(vector.nonce + vector.cipher + vector.tag);
          expect((await open(key, [sealed])).toString('hex')).toBe(vector.plain);
        });
      }

      it('opens what WebCrypto sealed, and WebCrypto opens what we sealed', async () => {
        const key = generatePatchKey();
        const plain = randomBytes(100_003);
        const nonce = randomBytes(12);
        const cryptoKey = await webcrypto.subtle.importKey('raw', key, 'AES-GCM', false, [
          'encrypt',
          'decrypt',
        ]);
        const theirs = Buffer.from(
          await webcrypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce }, cryptoKey, plain),
        );
        expect((await open(key, [Buffer.concat([nonce, theirs])])).equals(plain)).toBe(true);

        const ours = await seal(key, plain);
        const opened = await webcrypto.subtle.decrypt(
          { name: 'AES-GCM', iv: ours.subarray(0, 12) },
          cryptoKey,
          ours.subarray(12),
        );
        expect(Buffer.from(opened).equals(plain)).toBe(true);
      });

      it('round-trips every size around block and chunk edges', async () => {
        const key = generatePatchKey();
        for (const size of [0, 1, 15, 16, 17, 64 * 1024 - 1, 1024 * 1024 + 3]) {
          const plain = randomBytes(size);
          const sealed = await seal(key, plain);
          expect(sealed.byteLength).toBe(sealedSize(size));
          expect((await open(key, [sealed])).equals(plain)).toBe(true);
        }
      });

      it('holds the tag back across any split of the sealed bytes', async () => {
        const key = generatePatchKey();
        const plain = randomBytes(40);
        const sealed = await seal(key, plain);
        for (let cut = 0; cut <= sealed.byteLength; cut++) {
          for (const second of [cut, Math.min(sealed.byteLength, cut + 5)]) {
            const parts = [
              sealed.subarray(0, cut),
              sealed.subarray(cut, second),
              sealed.subarray(second),
            ].filter((p) => p.length > 0);
            expect((await open(key, parts)).equals(plain)).toBe(true);
          }
        }
      });

      it('opens large content split into chunks of every kind of size', async () => {
        const key = generatePatchKey();
        const plain = randomBytes(3 * 1024 * 1024 + 7);
        const sealed = await seal(key, plain);
        for (const sizes of [[1, 15, 16, 17], [65_536, 5], [100_000], [1024 * 1024 + 1, 3, 31]]) {
          const parts: Buffer[] = [];
          for (let offset = 0, i = 0; offset < sealed.byteLength; i++) {
            const size = sizes[i % sizes.length]!;
            parts.push(sealed.subarray(offset, offset + size));
            offset += size;
          }
          expect((await open(key, parts)).equals(plain)).toBe(true);
        }
      });

      it('uses a fresh nonce per blob', async () => {
        const key = generatePatchKey();
        const plain = Buffer.from('same content');
        const [a, b] = await Promise.all([seal(key, plain), seal(key, plain)]);
        expect(a.subarray(0, 12).equals(b.subarray(0, 12))).toBe(false);
      });

      it('refuses a wrong key, a flipped byte in nonce, ciphertext or tag, truncation and extension', async () => {
        const key = generatePatchKey();
        const sealed = await seal(key, randomBytes(1000));
        const flipped = (index: number) => {
          const copy = Buffer.from(sealed);
          copy[index]! ^= 0x01;
          return copy;
        };
        const attempts: Array<[string, Uint8Array, Buffer]> = [
          ['wrong key', generatePatchKey(), sealed],
          ['nonce', key, flipped(3)],
          ['ciphertext', key, flipped(500)],
          ['tag', key, flipped(sealed.byteLength - 2)],
          ['truncated', key, sealed.subarray(0, sealed.byteLength - 1)],
          ['too short', key, sealed.subarray(0, SEAL_OVERHEAD - 1)],
          ['extended', key, Buffer.concat([sealed, Buffer.from([0])])],
        ];
        for (const [what, attemptKey, bytes] of attempts) {
          const error = await openError(attemptKey, bytes);
          expect(isSplinterError(error, 'DECRYPTION_FAILED'), `${what}: ${String(error)}`).toBe(true);
        }
      });
    },
  );
}

describe.skipIf(native.backend !== 'native')('native and node:crypto backends', () => {
  it('produce the same bytes and open each other, whatever the chunking', async () => {
    const key = generatePatchKey();
    const nonce = randomBytes(12);
    for (const size of [0, 1, 16, 1000, 64 * 1024 + 5, 2 * 1024 * 1024 + 17]) {
      const plain = randomBytes(size);
      const chunks: Buffer[] = [];
      for (let offset = 0, step = 1; offset < size; offset += step, step = step * 7 + 3)
        chunks.push(plain.subarray(offset, offset + step));
      const sealed = await Promise.all(
        BACKENDS.map((backend) => through(createSealStream(key, { nonce, backend }), chunks)),
      );
      expect(sealed[0]!.equals(sealed[1]!), `size ${size}`).toBe(true);
      for (const backend of BACKENDS) {
        expect((await through(createOpenStream(key, { backend }), [sealed[0]!])).equals(plain)).toBe(true);
      }
    }
  });

  it('leaves the input chunks alone (they may be read elsewhere, as pull tees them into the cache)', async () => {
    const key = generatePatchKey();
    const plain = randomBytes(300_000);
    const plainCopy = Buffer.from(plain);
    const sealed = await through(createSealStream(key, { backend: 'native' }), [plain]);
    expect(plain.equals(plainCopy)).toBe(true);
    const sealedCopy = Buffer.from(sealed);
    await through(createOpenStream(key, { backend: 'native' }), [sealed]);
    expect(sealed.equals(sealedCopy)).toBe(true);
  });
});

describe('key ids', () => {
  it('names keys without revealing them', () => {
    const key = generatePatchKey();
    expect(keyIdOf(key)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(keyIdOf(key)).toBe(keyIdOf(Uint8Array.from(key)));
    expect(keyIdOf(key)).not.toContain(Buffer.from(key).toString('hex'));
    expect(keyIdOf(key)).not.toBe(keyIdOf(generatePatchKey()));
  });
});

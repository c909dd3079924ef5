import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSplinterError } from '@splinter/errors';
import {
  createSealStream,
  generatePatchKey,
  openSealedFile,
  type SealBackend,
  sealBackend,
  sealedSize,
  sealFile,
} from '@splinter/seal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const native = sealBackend();
const BACKENDS: SealBackend[] = ['native', 'node:crypto'];
/** The native pass reads through a 256 KiB buffer: sizes on both sides of its edges. */
const EDGE = 256 * 1024;

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'splinter-seal-file-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
const fresh = (name: string) => join(work, `${name}-${counter++}`);

async function plainFile(size: number): Promise<{ path: string; bytes: Buffer }> {
  const bytes = randomBytes(size);
  const path = fresh('plain');
  await writeFile(path, bytes);
  return { path, bytes };
}

function sealInMemory(key: Uint8Array, nonce: Buffer, plain: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const stream = createSealStream(key, { nonce, backend: 'node:crypto' });
    stream.on('data', (chunk: Buffer) => parts.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(parts)));
    stream.on('error', reject);
    stream.end(plain);
  });
}

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}` as const;

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => new Error('expected a failure'),
    (error: unknown) => error,
  );
}

for (const backend of BACKENDS) {
  describe.skipIf(backend === 'native' && native.backend !== 'native')(`whole files (${backend})`, () => {
    it('seals exactly what the stream seals, and reports the digest and size of the sealed file', async () => {
      const key = generatePatchKey();
      const nonce = randomBytes(12);
      for (const size of [0, 1, EDGE - 1, EDGE, EDGE + 1, 3 * EDGE + 5]) {
        const plain = await plainFile(size);
        const sealedPath = fresh('sealed');
        const result = await sealFile(plain.path, sealedPath, key, { nonce, backend });
        const sealed = await readFile(sealedPath);
        expect(sealed.equals(await sealInMemory(key, nonce, plain.bytes)), `size ${size}`).toBe(true);
        expect(result).toEqual({ digest: sha256(sealed), size: sealedSize(size) });
        expect((await stat(sealedPath)).mode & 0o777).toBe(0o600);
      }
    });

    it('WebCrypto opens a sealed file, and a file WebCrypto sealed opens into the same bytes', async () => {
      const key = generatePatchKey();
      const cryptoKey = await webcrypto.subtle.importKey('raw', key, 'AES-GCM', false, [
        'encrypt',
        'decrypt',
      ]);
      const plain = await plainFile(EDGE * 2 + 77);
      const sealedPath = fresh('sealed');
      await sealFile(plain.path, sealedPath, key, { backend });
      const sealed = await readFile(sealedPath);
      const opened = await webcrypto.subtle.decrypt(
        { name: 'AES-GCM', iv: sealed.subarray(0, 12) },
        cryptoKey,
        sealed.subarray(12),
      );
      expect(Buffer.from(opened).equals(plain.bytes)).toBe(true);

      const nonce = randomBytes(12);
      const theirs = Buffer.concat([
        nonce,
        Buffer.from(await webcrypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce }, cryptoKey, plain.bytes)),
      ]);
      const theirsPath = fresh('theirs');
      await writeFile(theirsPath, theirs);
      const out = fresh('out');
      const result = await openSealedFile(theirsPath, out, key, {
        expected: { digest: sha256(theirs), size: theirs.byteLength },
        backend,
      });
      expect(result).toEqual({ size: plain.bytes.byteLength });
      expect((await readFile(out)).equals(plain.bytes)).toBe(true);
      // Plaintext lands private; whoever places it (pull's writeFileLayer) sets the tree's mode.
      expect((await stat(out)).mode & 0o777).toBe(0o600);
    });

    it('opens every size around the read buffer edges, into a file or only to check it', async () => {
      const key = generatePatchKey();
      for (const size of [0, 1, 15, 16, 17, EDGE - 28, EDGE, EDGE + 1, 4 * EDGE + 3]) {
        const plain = await plainFile(size);
        const sealedPath = fresh('sealed');
        const { digest, size: sealedBytes } = await sealFile(plain.path, sealedPath, key, { backend });
        const out = fresh('out');
        await openSealedFile(sealedPath, out, key, { expected: { digest, size: sealedBytes }, backend });
        expect((await readFile(out)).equals(plain.bytes), `size ${size}`).toBe(true);
        expect(await openSealedFile(sealedPath, undefined, key, { backend })).toEqual({ size });
      }
    });

    it('refuses altered, truncated, mislabelled and wrongly keyed blobs, and leaves no output file', async () => {
      const key = generatePatchKey();
      const plain = await plainFile(EDGE + 1000);
      const sealedPath = fresh('sealed');
      const expected = await sealFile(plain.path, sealedPath, key, { backend });
      const sealed = await readFile(sealedPath);
      const variant = async (bytes: Buffer) => {
        const path = fresh('variant');
        await writeFile(path, bytes);
        return path;
      };
      const flipped = (index: number) => {
        const copy = Buffer.from(sealed);
        copy[index]! ^= 0x01;
        return variant(copy);
      };
      const cases: Array<[string, Promise<string>, Uint8Array, boolean, string]> = [
        ['wrong key', variant(sealed), generatePatchKey(), false, 'DECRYPTION_FAILED'],
        ['flipped nonce', flipped(3), key, false, 'DECRYPTION_FAILED'],
        ['flipped ciphertext', flipped(EDGE + 20), key, false, 'DECRYPTION_FAILED'],
        ['flipped tag', flipped(sealed.byteLength - 1), key, false, 'DECRYPTION_FAILED'],
        ['truncated', variant(sealed.subarray(0, sealed.byteLength - 1)), key, false, 'DECRYPTION_FAILED'],
        ['shorter than nonce and tag', variant(sealed.subarray(0, 27)), key, false, 'DECRYPTION_FAILED'],
        ['empty', variant(Buffer.alloc(0)), key, false, 'DECRYPTION_FAILED'],
        // With the descriptor given, altered bytes are named by their digest before the tag is considered.
        ['flipped ciphertext, digest checked', flipped(100), key, true, 'DIGEST_MISMATCH'],
        ['wrong key, digest checked', variant(sealed), generatePatchKey(), true, 'DECRYPTION_FAILED'],
        ['truncated, digest checked', variant(sealed.subarray(0, 5000)), key, true, 'SIZE_MISMATCH'],
      ];
      for (const [what, path, attemptKey, withDigest, code] of cases) {
        const out = fresh('out');
        const error = await failure(
          openSealedFile(await path, out, attemptKey, { backend, ...(withDigest ? { expected } : {}) }),
        );
        expect(isSplinterError(error, code as 'DECRYPTION_FAILED'), `${what}: ${String(error)}`).toBe(true);
        expect((error as Error).message).not.toContain('\n');
        await expect(stat(out), what).rejects.toMatchObject({ code: 'ENOENT' });
      }
      expect(
        isSplinterError(
          await failure(
            openSealedFile(sealedPath, undefined, key, {
              backend,
              expected: { ...expected, digest: sha256(Buffer.from('other')) },
            }),
          ),
          'DIGEST_MISMATCH',
        ),
      ).toBe(true);
    });

    it('never writes over an existing file', async () => {
      const key = generatePatchKey();
      const plain = await plainFile(1000);
      const sealedPath = fresh('sealed');
      await sealFile(plain.path, sealedPath, key, { backend });
      const existing = fresh('existing');
      await writeFile(existing, 'keep me');
      await expect(openSealedFile(sealedPath, existing, key, { backend })).rejects.toMatchObject({
        code: 'EEXIST',
      });
      await expect(sealFile(plain.path, existing, key, { backend })).rejects.toMatchObject({
        code: 'EEXIST',
      });
      expect(await readFile(existing, 'utf8')).toBe('keep me');
    });
  });
}

describe.skipIf(native.backend !== 'native')('whole files on the native addon', () => {
  it('agree byte for byte with node:crypto and open what it sealed', async () => {
    const key = generatePatchKey();
    const nonce = randomBytes(12);
    const plain = await plainFile(3 * EDGE + 11);
    const paths = await Promise.all(
      BACKENDS.map(async (backend) => {
        const path = fresh(`sealed-${backend.replace(':', '-')}`);
        await sealFile(plain.path, path, key, { nonce, backend });
        return path;
      }),
    );
    const [ours, theirs] = await Promise.all(paths.map((path) => readFile(path)));
    expect(ours!.equals(theirs!)).toBe(true);
    const out = fresh('out');
    await openSealedFile(paths[1]!, out, key, { backend: 'native' });
    expect((await readFile(out)).equals(plain.bytes)).toBe(true);
  });

  it('keeps memory flat and the event loop turning while it opens 256 MiB', async () => {
    const key = generatePatchKey();
    const sealedPath = fresh('big');
    const chunk = randomBytes(1024 * 1024);
    const plainPath = fresh('big-plain');
    await writeFile(plainPath, Buffer.alloc(0));
    for (let i = 0; i < 256; i++) await appendFile(plainPath, chunk);
    await sealFile(plainPath, sealedPath, key, { backend: 'native' });
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    let turns = 0;
    const timer = setInterval(() => {
      turns += 1;
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 1);
    try {
      await openSealedFile(sealedPath, undefined, key, { backend: 'native' });
    } finally {
      clearInterval(timer);
    }
    // The pass runs on a worker thread through one 256 KiB buffer: the main thread is free meanwhile.
    expect(turns).toBeGreaterThan(5);
    expect(peak - rssBefore).toBeLessThan(16 * 1024 * 1024);
  });
});

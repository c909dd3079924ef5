import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  PRIVATE_KEY_LABELS,
  SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
  simpleSigningPayload,
  verifyLegacySignature,
  writeKeyPair,
} from '@splintertree/sign';
import { errorCodeOf, requireTool } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const VECTORS = fileURLToPath(new URL('../../../fixtures/cosign-vectors/', import.meta.url));

interface VectorCase {
  name: string;
  expect: 'valid' | 'invalid';
  why: string;
  publicKey: string;
  manifest_b64: string;
  layerMediaType: string;
  payload_b64: string;
  annotations: Record<string, string>;
}

describe('cosign vectors', () => {
  let cases: VectorCase[];
  beforeAll(async () => {
    if (!existsSync(VECTORS)) throw new Error(`cosign vectors not found at ${VECTORS}`);
    cases = (JSON.parse(await readFile(join(VECTORS, 'signatures.json'), 'utf8')) as { cases: VectorCase[] })
      .cases;
  });

  it('gives every signatures.json case its expected verdict', async () => {
    expect(cases.length).toBeGreaterThanOrEqual(8);
    for (const vector of cases) {
      const key = loadPublicKey(await readFile(join(VECTORS, vector.publicKey), 'utf8'), vector.publicKey);
      const manifest = Buffer.from(vector.manifest_b64, 'base64');
      const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
      const verdict = verifyLegacySignature(
        {
          mediaType: vector.layerMediaType,
          payload: Buffer.from(vector.payload_b64, 'base64'),
          annotations: vector.annotations,
        },
        digest,
        [key],
      );
      expect(verdict?.ok === true ? 'valid' : 'invalid', `${vector.name}: ${vector.why}`).toBe(vector.expect);
    }
  });

  it('loads sigstore-hello.key with password "hello"; its public key is the one the README gives', async () => {
    const signer = await loadPrivateKey(await readFile(join(VECTORS, 'sigstore-hello.key'), 'utf8'), 'hello');
    const readme = await readFile(join(VECTORS, 'README.md'), 'utf8');
    const published = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(readme)![0];
    expect(signer.keyId).toBe(loadPublicKey(published).keyId);
  });

  it('refuses a wrong password, a SEC1 key inside, and an unknown label, each with its own code', async () => {
    const key = await readFile(join(VECTORS, 'sigstore-hello.key'), 'utf8');
    expect(await errorCodeOf(loadPrivateKey(key, 'nope'))).toBe('KEY_PASSWORD_WRONG');
    const sec1 = await readFile(join(VECTORS, 'cosign-sec1-ec-hello.key'), 'utf8');
    expect(await errorCodeOf(loadPrivateKey(sec1, 'hello'))).toBe('KEY_UNSUPPORTED');
    expect(await errorCodeOf(loadPrivateKey(key.replaceAll('SIGSTORE', 'MYSTERY'), 'hello'))).toBe(
      'KEY_INVALID',
    );
  });
});

describe('generated keys and signatures', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'splinter-sign-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('writes cosign-format key files (0600 / 0644) that load again and refuses to overwrite them', async () => {
    const pair = await generateKeyPair('correct horse');
    const prefix = join(work, 'cosign');
    await writeKeyPair(prefix, pair);
    expect((await stat(`${prefix}.key`)).mode & 0o777).toBe(0o600);
    expect((await stat(`${prefix}.pub`)).mode & 0o777).toBe(0o644);
    const text = await readFile(`${prefix}.key`, 'utf8');
    expect(text.startsWith(`-----BEGIN ${PRIVATE_KEY_LABELS[0]}-----\n`)).toBe(true);
    expect(PRIVATE_KEY_LABELS[0]).toBe(['ENCRYPTED', 'SIGSTORE', 'PRIVATE', 'KEY'].join(' '));
    const body = JSON.parse(Buffer.from(text.split('\n').slice(1, -2).join(''), 'base64').toString());
    expect(body.kdf).toMatchObject({ name: 'scrypt', params: { N: 65536, r: 8, p: 1 } });
    const signer = await loadPrivateKey(text, 'correct horse');
    expect(signer.keyId).toBe(loadPublicKey(pair.publicKeyPem).keyId);
    expect(await errorCodeOf(writeKeyPair(prefix, pair))).toBe('OUTPUT_EXISTS');
  });

  it('signs payloads that openssl verifies, and that verify only for the digest they name', async () => {
    const openssl = requireTool('openssl');
    const pair = await generateKeyPair('');
    const signer = await loadPrivateKey(pair.privateKeyPem, '');
    const digest = `sha256:${'ab'.repeat(32)}`;
    const payload = simpleSigningPayload(digest, 'registry.example/patches/eu-1');
    expect(payload.toString()).toBe(
      `{"critical":{"identity":{"docker-reference":"registry.example/patches/eu-1"},"image":{"docker-manifest-digest":"${digest}"},"type":"cosign container image signature"},"optional":null}`,
    );
    const signature = Buffer.from(await signer.sign(payload));
    await writeFile(join(work, 'payload'), payload);
    await writeFile(join(work, 'sig.der'), signature);
    await writeFile(join(work, 'pub.pem'), pair.publicKeyPem);
    const { stdout } = await run(openssl, [
      'dgst',
      '-sha256',
      '-verify',
      join(work, 'pub.pem'),
      '-signature',
      join(work, 'sig.der'),
      join(work, 'payload'),
    ]);
    expect(stdout.trim()).toBe('Verified OK');

    const layer = {
      mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
      payload,
      annotations: { [SIGNATURE_ANNOTATION]: signature.toString('base64') },
    };
    const trusted = [loadPublicKey(pair.publicKeyPem)];
    expect(verifyLegacySignature(layer, digest, trusted)).toEqual({ ok: true, keyId: signer.keyId });
    expect(verifyLegacySignature(layer, `sha256:${'cd'.repeat(32)}`, trusted)).toMatchObject({
      ok: false,
      code: 'SIGNATURE_INVALID',
    });
    const other = loadPublicKey((await generateKeyPair('')).publicKeyPem);
    expect(verifyLegacySignature(layer, digest, [other])).toMatchObject({
      ok: false,
      code: 'SIGNATURE_UNTRUSTED',
    });
    const corrupted = Buffer.from(signature);
    corrupted[corrupted.length - 3]! ^= 0x40;
    expect(
      verifyLegacySignature(
        { ...layer, annotations: { [SIGNATURE_ANNOTATION]: corrupted.toString('base64') } },
        digest,
        trusted,
      )?.ok,
    ).toBe(false);
  });
});

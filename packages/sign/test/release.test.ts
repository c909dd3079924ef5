import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  advanceReleaseKeys,
  checkReleaseStatement,
  createSignatureBundle,
  type DsseEnvelope,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  openReleaseStatement,
  preAuthEncoding,
  type ReleaseStatement,
  type Signer,
  signReleaseKeyList,
  signReleaseStatement,
  type TrustedKey,
} from '@splintertree/sign';
import { errorCodeOf, requireTool } from '@splintertree/testkit';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const codeOf = (work: () => unknown) => errorCodeOf((async () => work())());

async function keyPair(): Promise<{ signer: Signer; trusted: TrustedKey; pem: string }> {
  const pair = await generateKeyPair('pw');
  return {
    signer: await loadPrivateKey(pair.privateKeyPem, 'pw'),
    trusted: loadPublicKey(pair.publicKeyPem),
    pem: pair.publicKeyPem,
  };
}

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const statement = (overrides: Partial<ReleaseStatement> = {}): ReleaseStatement => ({
  realm: 'eu-1',
  sequence: '7',
  release: '5',
  action: 'activate',
  head: { id: '3', version: '3.0.0', digest: DIGEST, reference: `reg.example/patches/eu-1@${DIGEST}` },
  mods: [],
  issuedAt: '2026-01-01T00:00:00.000Z',
  expiresAt: '2026-01-08T00:00:00.000Z',
  ...overrides,
});
const inside = new Date('2026-01-02T00:00:00Z');

describe('release statements: DSSE envelopes signed by a release key', () => {
  let release: Awaited<ReturnType<typeof keyPair>>;
  let other: Awaited<ReturnType<typeof keyPair>>;
  beforeAll(async () => {
    release = await keyPair();
    other = await keyPair();
  });

  it('round-trips, and openssl verifies the signature over the DSSE pre-authentication encoding', async () => {
    const envelope = await signReleaseStatement(statement(), release.signer);
    const opened = openReleaseStatement(JSON.stringify(envelope), [other.trusted, release.trusted]);
    expect(opened.statement).toEqual(statement());
    expect(opened.keyId).toBe(release.trusted.keyId);
    expect(envelope.signatures[0]!.keyid).toBe(release.signer.keyId);

    const openssl = requireTool('openssl');
    const dir = await mkdtemp(join(tmpdir(), 'splinter-release-'));
    try {
      await writeFile(join(dir, 'pub.pem'), release.pem);
      await writeFile(
        join(dir, 'pae'),
        preAuthEncoding(envelope.payloadType, Buffer.from(envelope.payload, 'base64')),
      );
      await writeFile(join(dir, 'sig'), Buffer.from(envelope.signatures[0]!.sig, 'base64'));
      const { stdout } = await run(openssl, [
        'dgst',
        '-sha256',
        '-verify',
        join(dir, 'pub.pem'),
        '-signature',
        join(dir, 'sig'),
        join(dir, 'pae'),
      ]);
      expect(stdout.trim()).toBe('Verified OK');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a statement by an unknown key, a tampered payload and a non-release payload', async () => {
    const envelope = await signReleaseStatement(statement(), other.signer);
    expect(await codeOf(() => openReleaseStatement(JSON.stringify(envelope), [release.trusted]))).toBe(
      'RELEASE_UNTRUSTED',
    );
    const good = await signReleaseStatement(statement(), release.signer);
    const payload = JSON.parse(Buffer.from(good.payload, 'base64').toString());
    payload.predicate.head.version = '9.9.9';
    const tampered: DsseEnvelope = {
      ...good,
      payload: Buffer.from(JSON.stringify(payload)).toString('base64'),
    };
    expect(await codeOf(() => openReleaseStatement(JSON.stringify(tampered), [release.trusted]))).toBe(
      'RELEASE_UNTRUSTED',
    );
    expect(await codeOf(() => openReleaseStatement('{"payloadType":1}', [release.trusted]))).toBe(
      'RELEASE_INVALID',
    );
    expect(await codeOf(() => openReleaseStatement('x'.repeat(70_000), [release.trusted]))).toBe(
      'RELEASE_INVALID',
    );
  });

  it('a content signature by the same key is no release statement (the predicate types differ)', async () => {
    const bundle = JSON.parse(
      (await createSignatureBundle(DIGEST as `sha256:${string}`, release.signer)).toString(),
    ) as { dsseEnvelope: DsseEnvelope };
    // The signature itself verifies under the key: only the statement's type tells the two apart.
    const error = await codeOf(() =>
      openReleaseStatement(JSON.stringify(bundle.dsseEnvelope), [release.trusted]),
    );
    expect(error).toBe('RELEASE_INVALID');
  });

  it('checks realm, sequence and expiry, each with its own code', async () => {
    const seen = { sequence: '7', digest: DIGEST };
    expect(() => checkReleaseStatement(statement(), { realm: 'eu-1', now: inside, seen })).not.toThrow();
    expect(await codeOf(() => checkReleaseStatement(statement(), { realm: 'us-1', now: inside }))).toBe(
      'RELEASE_REALM_MISMATCH',
    );
    expect(
      await codeOf(() =>
        checkReleaseStatement(statement({ sequence: '6' }), { realm: 'eu-1', now: inside, seen }),
      ),
    ).toBe('RELEASE_ROLLBACK');
    expect(
      await codeOf(() =>
        checkReleaseStatement(
          statement({ head: { ...statement().head, digest: `sha256:${'cd'.repeat(32)}` } }),
          {
            realm: 'eu-1',
            now: inside,
            seen,
          },
        ),
      ),
    ).toBe('RELEASE_ROLLBACK');
    expect(
      await codeOf(() =>
        checkReleaseStatement(statement(), { realm: 'eu-1', now: new Date('2026-01-08T00:00:00Z') }),
      ),
    ).toBe('RELEASE_EXPIRED');
    expect(
      await codeOf(() =>
        checkReleaseStatement(statement(), { realm: 'eu-1', now: new Date('2025-12-31T00:00:00Z') }),
      ),
    ).toBe('RELEASE_INVALID');
  });

  it('rotates keys through lists each signed by a key of the previous one', async () => {
    const third = await keyPair();
    const pinned = { version: 0, keys: [release.trusted] };
    const v1 = await signReleaseKeyList(
      { version: 1, keys: [other.pem], issuedAt: '2026-01-01T00:00:00Z' },
      release.signer,
    );
    const v2 = await signReleaseKeyList(
      { version: 2, keys: [third.pem], issuedAt: '2026-01-02T00:00:00Z' },
      other.signer,
    );
    const rotated = advanceReleaseKeys(pinned, [JSON.stringify(v2), JSON.stringify(v1)]);
    expect(rotated.version).toBe(2);
    expect(rotated.keys.map((k) => k.keyId)).toEqual([third.trusted.keyId]);
    // Applied lists are skipped; once at v2 the pinned key of v0 signs nothing any more.
    expect(advanceReleaseKeys(rotated, [v1, v2]).version).toBe(2);
    const byOld = await signReleaseStatement(statement(), release.signer);
    expect(await codeOf(() => openReleaseStatement(JSON.stringify(byOld), rotated.keys))).toBe(
      'RELEASE_UNTRUSTED',
    );
    // A list signed by a key that is not in the previous one, or one that skips a version, is refused.
    const forged = await signReleaseKeyList(
      { version: 1, keys: [third.pem], issuedAt: '2026-01-01T00:00:00Z' },
      third.signer,
    );
    expect(await codeOf(() => advanceReleaseKeys(pinned, [forged]))).toBe('RELEASE_KEYS_INVALID');
    expect(await codeOf(() => advanceReleaseKeys(pinned, [v2]))).toBe('RELEASE_KEYS_INVALID');
  });
});

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  descriptorFor,
  dockerConfigCredentials,
  EMPTY_JSON,
  type ImageManifest,
  MediaType,
  RegistryTarget,
  readAllLimited,
} from '@splinter/oci';
import {
  attachLegacySignature,
  generateKeyPair,
  legacySignatureTag,
  loadPrivateKey,
  loadPublicKey,
  requireTrustedSignature,
  SIGNATURE_ANNOTATION,
  verifyLegacySignatures,
} from '@splinter/sign';
import { errorCodeOf, type RunningRegistry, requireTool, startRegistry } from '@splinter/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);

async function newSigner() {
  const pair = await generateKeyPair('');
  return {
    signer: await loadPrivateKey(pair.privateKeyPem, ''),
    trusted: loadPublicKey(pair.publicKeyPem),
    pem: pair.publicKeyPem,
  };
}

describe('legacy cosign signatures in a real registry', () => {
  let registry: RunningRegistry;
  let target: RegistryTarget;
  let work: string;
  beforeAll(async () => {
    registry = await startRegistry({ auth: 'htpasswd' });
    target = new RegistryTarget({
      registry: registry.host,
      repository: 'signed/patch',
      plainHttp: true,
      credentials: dockerConfigCredentials(registry.dockerConfigDir),
    });
    work = await mkdtemp(join(tmpdir(), 'splinter-attach-'));
  });
  afterAll(async () => {
    await target?.close();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function pushSubject() {
    const layerBytes = randomBytes(500);
    const layer = descriptorFor('application/vnd.example.layer', layerBytes);
    await target.push(descriptorFor(MediaType.Empty, EMPTY_JSON), EMPTY_JSON);
    await target.push(layer, layerBytes);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      artifactType: 'application/vnd.splintertree.patch.v1',
      config: descriptorFor(MediaType.Empty, EMPTY_JSON),
      layers: [layer],
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    const descriptor = descriptorFor(MediaType.ImageManifest, bytes);
    await target.push(descriptor, bytes);
    return descriptor;
  }

  it('writes a .sig image that skopeo reads and whose signature openssl verifies', async () => {
    const subject = await pushSubject();
    const { signer, trusted, pem } = await newSigner();
    await attachLegacySignature(target, subject, signer, `${registry.host}/signed/patch`);
    const skopeo = requireTool('skopeo');
    const { stdout } = await run(skopeo, [
      'inspect',
      '--raw',
      '--tls-verify=false',
      '--creds',
      `${registry.username}:${registry.password}`,
      `docker://${registry.host}/signed/patch:${legacySignatureTag(subject)}`,
    ]);
    const image = JSON.parse(stdout) as ImageManifest;
    expect(image.layers).toHaveLength(1);
    const layer = image.layers[0]!;
    expect(layer.mediaType).toBe('application/vnd.dev.cosign.simplesigning.v1+json');
    const payload = await readAllLimited(await target.fetch(layer), 1 << 16);
    await writeFile(join(work, 'payload'), payload);
    await writeFile(join(work, 'sig'), Buffer.from(layer.annotations![SIGNATURE_ANNOTATION]!, 'base64'));
    await writeFile(join(work, 'pub.pem'), pem);
    const openssl = requireTool('openssl');
    const verified = await run(openssl, [
      'dgst',
      '-sha256',
      '-verify',
      join(work, 'pub.pem'),
      '-signature',
      join(work, 'sig'),
      join(work, 'payload'),
    ]);
    expect(verified.stdout.trim()).toBe('Verified OK');
    expect(await requireTrustedSignature(target, subject, [trusted])).toEqual([
      { format: 'legacy', keyId: signer.keyId, signatureDigest: layer.digest },
    ]);
  });

  it('keeps every signature when five signers race on one artifact', async () => {
    const subject = await pushSubject();
    const signers = await Promise.all(Array.from({ length: 5 }, newSigner));
    await Promise.all(
      signers.map(({ signer }) => attachLegacySignature(target, subject, signer, 'signed/patch')),
    );
    const report = await verifyLegacySignatures(
      target,
      subject,
      signers.map((s) => s.trusted),
    );
    expect(new Set(report.verified.map((v) => v.keyId))).toEqual(new Set(signers.map((s) => s.signer.keyId)));
    expect(report.verified).toHaveLength(5);
  }, 60_000);

  it('refuses unsigned artifacts, untrusted keys and signatures that name another manifest', async () => {
    const unsigned = await pushSubject();
    expect(await errorCodeOf(requireTrustedSignature(target, unsigned, [(await newSigner()).trusted]))).toBe(
      'SIGNATURE_MISSING',
    );

    const subject = await pushSubject();
    const { signer, trusted } = await newSigner();
    await attachLegacySignature(target, subject, signer, 'signed/patch');
    expect(await errorCodeOf(requireTrustedSignature(target, subject, [(await newSigner()).trusted]))).toBe(
      'SIGNATURE_UNTRUSTED',
    );

    // An attacker copies a genuine signature image onto another artifact's .sig tag.
    const victim = await pushSubject();
    await target.tag(await target.resolve(legacySignatureTag(subject)), legacySignatureTag(victim));
    expect(await errorCodeOf(requireTrustedSignature(target, victim, [trusted]))).toBe('SIGNATURE_INVALID');
  }, 60_000);
});

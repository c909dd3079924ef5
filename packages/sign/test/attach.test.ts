import { execFile } from 'node:child_process';
import { type KeyObject, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bundleFromJSON } from '@sigstore/bundle';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import {
  descriptorFor,
  dockerConfigCredentials,
  EMPTY_JSON,
  type ImageManifest,
  MediaType,
  RegistryTarget,
  readAllLimited,
} from '@splintertree/oci';
import {
  attachLegacySignature,
  attachSignatureBundle,
  generateKeyPair,
  legacySignatureTag,
  loadPrivateKey,
  loadPublicKey,
  requireTrustedSignature,
  SIGNATURE_ANNOTATION,
  SIGSTORE_BUNDLE_MEDIA_TYPE,
  verifySignatures,
} from '@splintertree/sign';
import { errorCodeOf, type RunningRegistry, requireTool, startRegistry } from '@splintertree/testkit';
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

/** openssl, not our code, checks an ECDSA P-256/SHA-256 signature over `data`. */
async function opensslVerifies(dir: string, pem: string, signature: Buffer, data: Buffer): Promise<string> {
  await writeFile(join(dir, 'openssl.pub'), pem);
  await writeFile(join(dir, 'openssl.sig'), signature);
  await writeFile(join(dir, 'openssl.data'), data);
  const { stdout } = await run(requireTool('openssl'), [
    'dgst',
    '-sha256',
    '-verify',
    join(dir, 'openssl.pub'),
    '-signature',
    join(dir, 'openssl.sig'),
    join(dir, 'openssl.data'),
  ]);
  return stdout.trim();
}

/** A @sigstore/verify Verifier that trusts exactly one public key, with no tlog, CT log or timestamps. */
function keyOnlyVerifier(publicKey: KeyObject): Verifier {
  const material = toTrustMaterial(
    { mediaType: '', tlogs: [], ctlogs: [], certificateAuthorities: [], timestampAuthorities: [] },
    () => ({ publicKey, validFor: () => true }),
  );
  return new Verifier(material, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
}

describe('cosign signatures in a real registry', () => {
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
    const signature = Buffer.from(layer.annotations![SIGNATURE_ANNOTATION]!, 'base64');
    expect(await opensslVerifies(work, pem, signature, payload)).toBe('Verified OK');
    expect((await requireTrustedSignature(target, subject, [trusted])).verified).toEqual([
      { format: 'legacy', keyId: signer.keyId, key: trusted.source, signatureDigest: layer.digest },
    ]);
  });

  it('keeps every signature when five signers race on one artifact', async () => {
    const subject = await pushSubject();
    const signers = await Promise.all(Array.from({ length: 5 }, newSigner));
    await Promise.all(
      signers.map(({ signer }) => attachLegacySignature(target, subject, signer, 'signed/patch')),
    );
    const report = await verifySignatures(
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

  it('drops a re-signing by the same key, as cosign does, and appends another key', async () => {
    const subject = await pushSubject();
    const first = await newSigner();
    const second = await newSigner();
    await attachLegacySignature(target, subject, first.signer, 'signed/patch');
    await attachLegacySignature(target, subject, first.signer, 'signed/patch');
    const image = async () =>
      JSON.parse(
        (
          await readAllLimited(await target.fetch(await target.resolve(legacySignatureTag(subject))), 1 << 20)
        ).toString(),
      ) as ImageManifest;
    expect((await image()).layers).toHaveLength(1);
    await attachLegacySignature(target, subject, second.signer, 'signed/patch');
    expect((await image()).layers).toHaveLength(2);
    const report = await verifySignatures(target, subject, [first.trusted, second.trusted]);
    expect(report.verified.map((v) => v.keyId).sort()).toEqual(
      [first.signer.keyId, second.signer.keyId].sort(),
    );
  }, 60_000);

  it('writes a cosign v3 bundle referrer that skopeo lists, @sigstore/verify and openssl verify', async () => {
    const subject = await pushSubject();
    const { signer, trusted, pem } = await newSigner();
    const { digest } = await attachSignatureBundle(target, subject, signer);

    // The registry lacks the referrers API: skopeo reads the sha256-<hex> fallback index we maintain.
    const skopeo = requireTool('skopeo');
    const creds = ['--tls-verify=false', '--creds', `${registry.username}:${registry.password}`];
    const fallback = `docker://${registry.host}/signed/patch:sha256-${subject.digest.slice(7)}`;
    const index = JSON.parse((await run(skopeo, ['inspect', '--raw', ...creds, fallback])).stdout) as {
      manifests: Array<{ digest: string; artifactType?: string }>;
    };
    expect(index.manifests).toContainEqual(
      expect.objectContaining({ digest, artifactType: SIGSTORE_BUNDLE_MEDIA_TYPE }),
    );
    const referrer = JSON.parse(
      (await run(skopeo, ['inspect', '--raw', ...creds, `docker://${registry.host}/signed/patch@${digest}`]))
        .stdout,
    ) as ImageManifest;
    expect(referrer.subject?.digest).toBe(subject.digest);
    expect(referrer.artifactType).toBe(SIGSTORE_BUNDLE_MEDIA_TYPE);
    expect(referrer.annotations?.['dev.sigstore.bundle.predicateType']).toBe(
      'https://sigstore.dev/cosign/sign/v1',
    );
    expect(referrer.layers).toHaveLength(1);
    const json = JSON.parse(
      (await readAllLimited(await target.fetch(referrer.layers[0]!), 1 << 20)).toString(),
    );

    // @sigstore/verify, given only the public key.
    const bundle = bundleFromJSON(json);
    expect(() => keyOnlyVerifier(trusted.keyObject).verify(toSignedEntity(bundle))).not.toThrow();
    const stranger = (await newSigner()).trusted;
    expect(() => keyOnlyVerifier(stranger.keyObject).verify(toSignedEntity(bundle))).toThrow();

    // openssl over the DSSE pre-authentication encoding, computed here from the spec.
    const envelope = json.dsseEnvelope as {
      payload: string;
      payloadType: string;
      signatures: Array<{ sig: string }>;
    };
    const payload = Buffer.from(envelope.payload, 'base64');
    const pae = Buffer.concat([
      Buffer.from(
        `DSSEv1 ${Buffer.byteLength(envelope.payloadType)} ${envelope.payloadType} ${payload.length} `,
      ),
      payload,
    ]);
    const signature = Buffer.from(envelope.signatures[0]!.sig, 'base64');
    expect(await opensslVerifies(work, pem, signature, pae)).toBe('Verified OK');
    const statement = JSON.parse(payload.toString()) as { subject: Array<{ digest: { sha256: string } }> };
    expect(statement.subject).toEqual([{ digest: { sha256: subject.digest.slice(7) } }]);

    expect((await requireTrustedSignature(target, subject, [trusted])).verified).toEqual([
      { format: 'bundle', keyId: signer.keyId, key: trusted.source, signatureDigest: digest },
    ]);
    // Signing again with the same key keeps the bundle that already verifies.
    expect((await attachSignatureBundle(target, subject, signer)).digest).toBe(digest);
  }, 60_000);

  it('keeps every bundle in the fallback index when three signers race', async () => {
    const subject = await pushSubject();
    const signers = await Promise.all(Array.from({ length: 3 }, newSigner));
    await Promise.all(signers.map(({ signer }) => attachSignatureBundle(target, subject, signer)));
    const report = await verifySignatures(
      target,
      subject,
      signers.map((s) => s.trusted),
    );
    expect(report.verified.map((v) => v.keyId).sort()).toEqual(signers.map((s) => s.signer.keyId).sort());
  }, 60_000);

  it('refuses a bundle copied onto another artifact, and ignores referrers that are not bundles', async () => {
    const subject = await pushSubject();
    const { signer, trusted } = await newSigner();
    const { digest } = await attachSignatureBundle(target, subject, signer);

    // Someone else's attachment (an SBOM) is not a signature.
    const victim = await pushSubject();
    const sbom = Buffer.from('{"spdxVersion":"SPDX-2.3"}');
    const sbomLayer = descriptorFor('application/spdx+json', sbom);
    await target.push(sbomLayer, sbom);
    const foreign: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      artifactType: 'application/spdx+json',
      config: descriptorFor(MediaType.Empty, EMPTY_JSON),
      layers: [sbomLayer],
      subject: { mediaType: victim.mediaType, digest: victim.digest, size: victim.size },
    };
    const foreignBytes = Buffer.from(JSON.stringify(foreign));
    await target.push(descriptorFor(MediaType.ImageManifest, foreignBytes), foreignBytes);
    expect(await errorCodeOf(requireTrustedSignature(target, victim, [trusted]))).toBe('SIGNATURE_MISSING');

    // The genuine bundle manifest, re-pointed at the victim: its statement still names the original.
    const original = JSON.parse(
      (await readAllLimited(await target.fetch(await target.resolve(digest)), 1 << 20)).toString(),
    ) as ImageManifest;
    const copied = {
      ...original,
      subject: { mediaType: victim.mediaType, digest: victim.digest, size: victim.size },
    };
    const copiedBytes = Buffer.from(JSON.stringify(copied));
    await target.push(descriptorFor(MediaType.ImageManifest, copiedBytes), copiedBytes);
    expect(await errorCodeOf(requireTrustedSignature(target, victim, [trusted]))).toBe('SIGNATURE_INVALID');
  }, 60_000);
});

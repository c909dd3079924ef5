import { createHash, randomBytes } from 'node:crypto';
import { bundleToJSON, toMessageSignatureBundle } from '@sigstore/bundle';
import { DSSEBundleBuilder, type Signer as SigstoreSigner } from '@sigstore/sign';
import {
  type Descriptor,
  descriptorFor,
  digestHex,
  EMPTY_JSON,
  type ImageManifest,
  MediaType,
  RegistryTarget,
} from '@splintertree/oci';
import {
  attachLegacySignature,
  attachSignatureBundle,
  COSIGN_SIGN_PREDICATE_TYPE,
  generateKeyPair,
  IN_TOTO_PAYLOAD_TYPE,
  legacySignatureTag,
  loadPrivateKey,
  loadPublicKey,
  MAX_BUNDLE_BYTES,
  MAX_LEGACY_PAYLOAD_BYTES,
  MAX_SIGNATURES_CONSIDERED,
  requireTrustedSignature,
  SIGNATURE_ANNOTATION,
  SIGSTORE_BUNDLE_MEDIA_TYPE,
  SIMPLE_SIGNING_MEDIA_TYPE,
  type Signer,
  verifySignatureBundle,
  verifySignatures,
} from '@splintertree/sign';
import { type FaultProxy, type RunningRegistry, startFaultProxy, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SPDX_PREDICATE_TYPE = 'https://spdx.dev/Document';

async function newSigner() {
  const pair = await generateKeyPair('');
  return { signer: await loadPrivateKey(pair.privateKeyPem, ''), trusted: loadPublicKey(pair.publicKeyPem) };
}

function sigstoreSigner(signer: Signer): SigstoreSigner {
  return {
    sign: async (data) => ({
      signature: Buffer.from(await signer.sign(data)),
      key: { $case: 'publicKey', publicKey: signer.publicKeyPem, hint: signer.keyId },
    }),
  };
}

/** A DSSE bundle over any in-toto statement, signed as `cosign attest --key` would. */
async function statementBundle(signer: Signer, subject: Descriptor, predicateType: string): Promise<Buffer> {
  const statement = {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: 'patch', digest: { sha256: digestHex(subject.digest) } }],
    predicateType,
    predicate: { spdxVersion: 'SPDX-2.3', name: 'patch', packages: [] },
  };
  const bundle = await new DSSEBundleBuilder({ signer: sigstoreSigner(signer), witnesses: [] }).create({
    data: Buffer.from(JSON.stringify(statement)),
    type: IN_TOTO_PAYLOAD_TYPE,
  });
  return Buffer.from(JSON.stringify(bundleToJSON(bundle)));
}

/** A message-signature bundle v0.3 over `data`, as `cosign sign-blob --new-bundle-format --key` writes. */
async function messageBundle(signer: Signer, data: Buffer): Promise<Buffer> {
  const bundle = toMessageSignatureBundle({
    digest: createHash('sha256').update(data).digest(),
    signature: Buffer.from(await signer.sign(data)),
    keyHint: signer.keyId,
    certificateChain: false,
  });
  return Buffer.from(JSON.stringify(bundleToJSON(bundle)));
}

describe('signatures from a hostile registry or an over-trusted key', () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let target: RegistryTarget;
  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    target = new RegistryTarget({ registry: proxy.host, repository: 'hostile/patch', plainHttp: true });
  });
  afterAll(async () => {
    await target?.close();
    await proxy?.stop();
    await registry?.stop();
  });

  async function push(mediaType: string, bytes: Uint8Array): Promise<Descriptor> {
    const descriptor = descriptorFor(mediaType, bytes);
    await target.push(descriptor, bytes);
    return descriptor;
  }

  async function pushSubject(): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const layer = await push('application/vnd.example.layer', randomBytes(500));
    await push(MediaType.Empty, EMPTY_JSON);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      artifactType: 'application/vnd.splintertree.patch.v1',
      config: descriptorFor(MediaType.Empty, EMPTY_JSON),
      layers: [layer],
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    return { descriptor: await push(MediaType.ImageManifest, bytes), bytes };
  }

  /** A bundle referrer laid out as cosign attaches one; `annotations` as the attaching tool chose. */
  async function attachReferrer(
    subject: Descriptor,
    bundle: Buffer,
    annotations: Record<string, string> = {},
  ): Promise<Descriptor> {
    await push(MediaType.Empty, EMPTY_JSON);
    const layer = await push(SIGSTORE_BUNDLE_MEDIA_TYPE, bundle);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      artifactType: SIGSTORE_BUNDLE_MEDIA_TYPE,
      config: descriptorFor(MediaType.Empty, EMPTY_JSON),
      layers: [layer],
      annotations: { 'dev.sigstore.bundle.content': 'dsse-envelope', ...annotations },
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    };
    return push(MediaType.ImageManifest, Buffer.from(JSON.stringify(manifest)));
  }

  /** Blob downloads the proxy saw since `mark`, by digest. */
  function blobGets(mark: number): string[] {
    return proxy.log
      .slice(mark)
      .filter((request) => request.method === 'GET' && request.path.includes('/blobs/'))
      .map((request) => request.path.slice(request.path.lastIndexOf('/') + 1));
  }

  it('an SBOM attestation signed by the release key is not a release signature', async () => {
    const { descriptor: subject } = await pushSubject();
    const { signer, trusted } = await newSigner();
    // Honestly annotated, as `cosign attest` writes it: recognised from its manifest, never downloaded.
    const annotated = await attachReferrer(
      subject,
      await statementBundle(signer, subject, SPDX_PREDICATE_TYPE),
      {
        'dev.sigstore.bundle.predicateType': SPDX_PREDICATE_TYPE,
      },
    );
    // Annotated as a signature: read, and refused on the predicate type the key actually signed.
    const disguised = await attachReferrer(
      subject,
      await statementBundle(signer, subject, SPDX_PREDICATE_TYPE),
      {
        'dev.sigstore.bundle.predicateType': COSIGN_SIGN_PREDICATE_TYPE,
      },
    );

    const report = await verifySignatures(target, subject, [trusted]);
    expect(report.verified).toEqual([]);
    expect(report.rejected).toEqual([]);
    expect(report.ignored).toEqual(
      expect.arrayContaining([
        {
          format: 'bundle',
          signatureDigest: annotated.digest,
          reason: `annotated as an attestation of predicate type ${SPDX_PREDICATE_TYPE}; not read`,
        },
        {
          format: 'bundle',
          signatureDigest: disguised.digest,
          reason: `an attestation of predicate type "${SPDX_PREDICATE_TYPE}", not a release signature (${COSIGN_SIGN_PREDICATE_TYPE})`,
        },
      ]),
    );
    expect(report.ignored).toHaveLength(2);
    const refusal = await requireTrustedSignature(target, subject, [trusted]).catch(
      (error: unknown) => error,
    );
    expect(refusal).toMatchObject({ code: 'SIGNATURE_MISSING', details: { ignored: report.ignored } });
    expect((refusal as Error).message).toMatch(
      /has no release signatures \(2 found beside them do not count: /,
    );

    // Signing the release adds a signature: the attestation by the same key does not stand in for it.
    const signed = await attachSignatureBundle(target, subject, signer);
    expect([annotated.digest, disguised.digest]).not.toContain(signed.digest);
    expect((await requireTrustedSignature(target, subject, [trusted])).verified).toEqual([
      { format: 'bundle', keyId: signer.keyId, key: trusted.source, signatureDigest: signed.digest },
    ]);
  }, 60_000);

  it('a message signature counts only over the manifest itself', async () => {
    const { descriptor: subject, bytes } = await pushSubject();
    const { signer, trusted } = await newSigner();
    const readManifest = async () => bytes;
    const overManifest = await messageBundle(signer, bytes);
    expect(await verifySignatureBundle(overManifest, subject.digest, [trusted], readManifest)).toEqual({
      ok: true,
      keyId: signer.keyId,
    });
    const stranger = (await newSigner()).trusted;
    expect(await verifySignatureBundle(overManifest, subject.digest, [stranger], readManifest)).toMatchObject(
      {
        ok: false,
        code: 'SIGNATURE_UNTRUSTED',
      },
    );
    const overOther = await messageBundle(signer, Buffer.from('another manifest'));
    expect(await verifySignatureBundle(overOther, subject.digest, [trusted], readManifest)).toMatchObject({
      ok: false,
      code: 'SIGNATURE_INVALID',
      reason: expect.stringMatching(/^message signature names digest [0-9a-f]{64}, not sha256:/),
    });

    // Through the registry: the manifest bytes are read (verified against the digest) to check it.
    const referrer = await attachReferrer(subject, overManifest, {
      'dev.sigstore.bundle.content': 'message-signature',
    });
    expect((await requireTrustedSignature(target, subject, [trusted])).verified).toEqual([
      { format: 'bundle', keyId: signer.keyId, key: trusted.source, signatureDigest: referrer.digest },
    ]);
  }, 60_000);

  it('a DSSE envelope that is not an in-toto statement does not count', async () => {
    const { descriptor: subject, bytes } = await pushSubject();
    const { signer, trusted } = await newSigner();
    const bundle = await new DSSEBundleBuilder({ signer: sigstoreSigner(signer), witnesses: [] }).create({
      data: Buffer.from('{"verdict":"QA passed"}'),
      type: 'application/vnd.example.qa+json',
    });
    const json = Buffer.from(JSON.stringify(bundleToJSON(bundle)));
    expect(await verifySignatureBundle(json, subject.digest, [trusted], async () => bytes)).toEqual({
      ok: false,
      code: 'NOT_A_RELEASE_SIGNATURE',
      reason: 'a DSSE envelope of payload type "application/vnd.example.qa+json", not an in-toto statement',
    });
  });

  it('reads at most 100 small .sig payloads and none over 64 KiB, whatever the .sig image lists', async () => {
    const { descriptor: subject } = await pushSubject();
    const { signer, trusted } = await newSigner();
    const genuine = (await attachLegacySignature(target, subject, signer, 'hostile/patch')).layer;
    const small = randomBytes(1024);
    const smallLayer = {
      ...(await push(SIMPLE_SIGNING_MEDIA_TYPE, small)),
      annotations: { [SIGNATURE_ANNOTATION]: 'AAAA' },
    };
    const large = randomBytes(1024 * 1024);
    const largeLayer = {
      ...(await push(SIMPLE_SIGNING_MEDIA_TYPE, large)),
      annotations: { [SIGNATURE_ANNOTATION]: 'AAAA' },
    };
    const config = await push(MediaType.ImageConfig, Buffer.from('{}'));
    const writeSigImage = async (layers: Descriptor[]) => {
      const bytes = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, config, layers }),
      );
      const descriptor = await push(MediaType.ImageManifest, bytes);
      await target.tag(descriptor, legacySignatureTag(subject));
      return descriptor;
    };

    // The genuine signature, 150 junk payloads and 50 payloads of 1 MiB: the first 100 are read.
    const crowded = await writeSigImage([
      genuine,
      ...Array.from({ length: 150 }, () => smallLayer),
      ...Array.from({ length: 50 }, () => largeLayer),
    ]);
    let mark = proxy.log.length;
    const report = await verifySignatures(target, subject, [trusted]);
    expect(report.verified).toEqual([
      { format: 'legacy', keyId: signer.keyId, key: trusted.source, signatureDigest: genuine.digest },
    ]);
    expect(report.rejected).toHaveLength(MAX_SIGNATURES_CONSIDERED - 1);
    expect(report.rejected.every((r) => r.signatureDigest === smallLayer.digest)).toBe(true);
    expect(report.ignored).toEqual([
      {
        format: 'legacy',
        signatureDigest: crowded.digest,
        reason: `101 signature layers past the first 100 of ${legacySignatureTag(subject)} were not read`,
      },
    ]);
    const gets = blobGets(mark);
    expect(gets).toHaveLength(MAX_SIGNATURES_CONSIDERED);
    expect(gets.filter((digest) => digest === smallLayer.digest)).toHaveLength(MAX_SIGNATURES_CONSIDERED - 1);
    expect(gets).not.toContain(largeLayer.digest);

    // A thousand 1 MiB payloads (1 GiB listed): nothing is downloaded, and the refusal says why.
    await writeSigImage(Array.from({ length: 1000 }, () => largeLayer));
    mark = proxy.log.length;
    const refusal = await requireTrustedSignature(target, subject, [trusted]).catch(
      (error: unknown) => error,
    );
    expect(refusal).toMatchObject({
      code: 'SIGNATURE_INVALID',
      message: `${subject.digest}: legacy signature: payload of ${large.length} bytes is over the ${MAX_LEGACY_PAYLOAD_BYTES}-byte limit`,
    });
    expect(blobGets(mark)).toEqual([]);
  }, 120_000);

  it('reads at most 100 bundle referrers and no bundle over the size a signature can be', async () => {
    const { descriptor: subject } = await pushSubject();
    const { trusted } = await newSigner();
    const oversizedBundle = randomBytes(MAX_BUNDLE_BYTES + 1);
    const oversized = await attachReferrer(subject, oversizedBundle);
    const junk = await attachReferrer(subject, Buffer.from('{"junk":true}'));
    // The registry lacks the referrers API: a hostile one lists the junk bundle 110 times in the index.
    const entry = (descriptor: Descriptor) => ({ ...descriptor, artifactType: SIGSTORE_BUNDLE_MEDIA_TYPE });
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.ImageIndex,
      manifests: [
        entry(oversized),
        ...Array.from({ length: MAX_SIGNATURES_CONSIDERED + 10 }, () => entry(junk)),
      ],
    };
    const indexDescriptor = await push(MediaType.ImageIndex, Buffer.from(JSON.stringify(index)));
    await target.tag(indexDescriptor, `sha256-${digestHex(subject.digest)}`);
    const mark = proxy.log.length;
    const report = await verifySignatures(target, subject, [trusted]);
    expect(report.verified).toEqual([]);
    expect(report.ignored).toContainEqual({
      format: 'bundle',
      signatureDigest: oversized.digest,
      reason: `bundle of ${MAX_BUNDLE_BYTES + 1} bytes is over the ${MAX_BUNDLE_BYTES} bytes a release signature can be; not read`,
    });
    expect(report.ignored).toContainEqual({
      format: 'bundle',
      signatureDigest: junk.digest,
      reason: 'this and 10 later bundle referrers past the first 100 were not read',
    });
    expect(report.rejected).toHaveLength(MAX_SIGNATURES_CONSIDERED - 1);
    expect(
      report.rejected.every((r) => r.code === 'SIGNATURE_INVALID' && r.signatureDigest === junk.digest),
    ).toBe(true);
    // One bundle blob per junk referrer considered; the oversized one is never downloaded.
    const gets = blobGets(mark);
    expect(gets).toHaveLength(MAX_SIGNATURES_CONSIDERED - 1);
    expect(gets).not.toContain(descriptorFor(SIGSTORE_BUNDLE_MEDIA_TYPE, oversizedBundle).digest);
  }, 120_000);
});

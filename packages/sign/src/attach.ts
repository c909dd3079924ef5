import { createPublicKey, verify } from 'node:crypto';
import { SplinterError } from '@splinter/errors';
import {
  Annotation,
  confirmedMerge,
  type Descriptor,
  type Digest,
  descriptorFor,
  digestHex,
  EMPTY_JSON,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  MediaType,
  parseManifest,
  readAllLimited,
  type Target,
} from '@splinter/oci';
import {
  type BundleVerdict,
  COSIGN_SIGN_PREDICATE_TYPE,
  createSignatureBundle,
  SIGSTORE_BUNDLE_MEDIA_TYPE,
  verifySignatureBundle,
} from './bundle.js';
import { keyIdOf, type Signer, type TrustedKey } from './keys.js';
import {
  type LegacyVerdict,
  SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
  simpleSigningPayload,
  verifyLegacySignature,
} from './legacy.js';

export type SignatureFormat = 'legacy' | 'bundle';

/** cosign's tag for the legacy signature image of a manifest: `sha256-<hex>.sig`. */
export function legacySignatureTag(subject: Pick<Descriptor, 'digest'>): string {
  return `sha256-${digestHex(subject.digest)}.sig`;
}

/** Signature payloads and bundles are small; anything larger is not one of ours or cosign's. */
const MAX_SIGNATURE_BLOB = 1024 * 1024;
const BUNDLE_MEDIA_TYPE_PREFIX = 'application/vnd.dev.sigstore.bundle';

/**
 * Appends a cosign legacy signature to `sha256-<hex>.sig`: read the signature image, add our layer,
 * write it back. As cosign does, a signature of the same payload that already verifies under the same
 * key makes ours redundant (ECDSA signatures differ on every signing, so byte equality would never
 * match). Rivals writing at once are merged with, never overwritten (see confirmedMerge).
 */
export async function attachLegacySignature(
  target: Target,
  subject: Descriptor,
  signer: Signer,
  dockerReference: string,
): Promise<{ tag: string; layer: Descriptor }> {
  const payload = simpleSigningPayload(subject.digest, dockerReference);
  const payloadDigest = descriptorFor(SIMPLE_SIGNING_MEDIA_TYPE, payload).digest;
  const publicKey = createPublicKey(signer.publicKeyPem);
  const ours = (layer: Descriptor) =>
    layer.digest === payloadDigest &&
    verify(
      'sha256',
      payload,
      publicKey,
      Buffer.from(layer.annotations?.[SIGNATURE_ANNOTATION] ?? '', 'base64'),
    );
  const tag = legacySignatureTag(subject);

  let layer = (await readSignatureImage(target, tag))?.layers.find(ours);
  if (!layer) {
    const signature = Buffer.from(await signer.sign(payload)).toString('base64');
    layer = {
      ...descriptorFor(SIMPLE_SIGNING_MEDIA_TYPE, payload),
      annotations: { [SIGNATURE_ANNOTATION]: signature },
    };
    await target.push(layer, payload);
  }
  const signed = layer;
  await confirmedMerge({
    what: `${target.location}:${tag}`,
    present: async () => (await readSignatureImage(target, tag))?.layers.some(ours) === true,
    merge: async () => {
      const existing = (await readSignatureImage(target, tag))?.layers ?? [];
      if (!existing.some(ours)) await writeSignatureImage(target, tag, [...existing, signed]);
    },
  });
  return { tag, layer: signed };
}

/**
 * Attaches a Sigstore bundle v0.3 as an OCI referrer of `subject`, laid out as cosign v3 writes it
 * (pushed by digest, untagged; registries without the referrers API get the `sha256-<hex>` index).
 * A bundle of ours that already verifies for this subject is kept instead of adding another.
 */
export async function attachSignatureBundle(
  target: Target,
  subject: Descriptor,
  signer: Signer,
  createdAt: Date = new Date(),
): Promise<{ digest: Digest }> {
  const publicKey = createPublicKey(signer.publicKeyPem);
  const ourKey: TrustedKey = { keyObject: publicKey, keyId: keyIdOf(publicKey), source: 'signer' };
  for (const existing of await bundleReferrers(target, subject)) {
    if ((await verifySignatureBundle(existing.bundle, subject.digest, [ourKey])).ok)
      return { digest: existing.digest };
  }
  const bundle = await createSignatureBundle(subject.digest, signer);
  const config = descriptorFor(MediaType.Empty, EMPTY_JSON);
  const layer = descriptorFor(SIGSTORE_BUNDLE_MEDIA_TYPE, bundle);
  await target.push(config, EMPTY_JSON);
  await target.push(layer, bundle);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    // cosign also puts the artifact type on the config descriptor; readers ignore it, we match the bytes' shape.
    config: { ...config, artifactType: SIGSTORE_BUNDLE_MEDIA_TYPE },
    layers: [layer],
    annotations: {
      [Annotation.Created]: `${createdAt.toISOString().slice(0, 19)}Z`,
      'dev.sigstore.bundle.content': 'dsse-envelope',
      'dev.sigstore.bundle.predicateType': COSIGN_SIGN_PREDICATE_TYPE,
    },
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    artifactType: SIGSTORE_BUNDLE_MEDIA_TYPE,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const descriptor = descriptorFor(MediaType.ImageManifest, bytes);
  await target.push(descriptor, bytes);
  return { digest: descriptor.digest };
}

async function readImageManifest(target: Target, descriptor: Descriptor): Promise<ImageManifest | undefined> {
  const manifest = parseManifest(
    await readAllLimited(await target.fetch(descriptor), MAX_MANIFEST_BYTES),
    descriptor.mediaType,
  );
  return 'layers' in manifest ? manifest : undefined;
}

async function readSignatureImage(target: Target, tag: string): Promise<ImageManifest | undefined> {
  let descriptor: Descriptor;
  try {
    descriptor = await target.resolve(tag);
  } catch (error) {
    if ((error as { code?: string }).code === 'NOT_FOUND') return undefined;
    throw error;
  }
  return readImageManifest(target, descriptor);
}

async function writeSignatureImage(target: Target, tag: string, layers: Descriptor[]): Promise<void> {
  // A minimal image config, as ggcr's empty image with appended layers has: diff_ids are the payload digests.
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  );
  const configDescriptor = descriptorFor(MediaType.ImageConfig, config);
  await target.push(configDescriptor, config);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    config: configDescriptor,
    layers,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const descriptor = descriptorFor(MediaType.ImageManifest, bytes);
  await target.push(descriptor, bytes);
  await target.tag(descriptor, tag);
}

/**
 * The bundles among `subject`'s referrers, read as cosign reads them: a manifest with exactly one layer
 * of a Sigstore bundle media type. Other referrers are someone else's attachments and are skipped.
 */
async function bundleReferrers(
  target: Target,
  subject: Descriptor,
): Promise<Array<{ digest: Digest; bundle: Buffer }>> {
  const found: Array<{ digest: Digest; bundle: Buffer }> = [];
  for (const referrer of await target.referrers(subject)) {
    if (referrer.artifactType !== undefined && !referrer.artifactType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX))
      continue;
    const manifest = await readImageManifest(target, referrer);
    const layer = manifest?.layers.length === 1 ? manifest.layers[0] : undefined;
    if (!layer?.mediaType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX) || layer.size > MAX_SIGNATURE_BLOB) continue;
    found.push({
      digest: referrer.digest,
      bundle: await readAllLimited(await target.fetch(layer), MAX_SIGNATURE_BLOB),
    });
  }
  return found;
}

/** The simple-signing layers of `sha256-<hex>.sig` with their payloads; other layers are not signatures. */
async function legacyPayloads(
  target: Target,
  subject: Descriptor,
): Promise<Array<{ layer: Descriptor; payload: Buffer }>> {
  const image = await readSignatureImage(target, legacySignatureTag(subject));
  const layers = (image?.layers ?? []).filter(
    (layer) => layer.mediaType === SIMPLE_SIGNING_MEDIA_TYPE && layer.size <= MAX_SIGNATURE_BLOB,
  );
  return Promise.all(
    layers.map(async (layer) => ({
      layer,
      payload: await readAllLimited(await target.fetch(layer), MAX_SIGNATURE_BLOB),
    })),
  );
}

export interface VerifiedSignature {
  format: SignatureFormat;
  keyId: string;
  /** Which trusted key: the file it was loaded from. */
  key: string;
  /** The `.sig` layer (payload) digest, or the bundle referrer's manifest digest. */
  signatureDigest: string;
}

export interface RejectedSignature {
  format: SignatureFormat;
  code: 'SIGNATURE_INVALID' | 'SIGNATURE_UNTRUSTED';
  reason: string;
  signatureDigest: string;
}

export interface SignatureReport {
  verified: VerifiedSignature[];
  rejected: RejectedSignature[];
}

/**
 * Checks every signature of `subject` in both formats, reading only signature images, referrer
 * manifests and their small blobs — never the subject's content.
 */
export async function verifySignatures(
  target: Target,
  subject: Descriptor,
  trustedKeys: TrustedKey[],
): Promise<SignatureReport> {
  const report: SignatureReport = { verified: [], rejected: [] };
  const record = (
    format: SignatureFormat,
    signatureDigest: string,
    verdict: LegacyVerdict | BundleVerdict,
  ) => {
    if (verdict.ok) {
      const key = trustedKeys.find((k) => k.keyId === verdict.keyId)?.source ?? verdict.keyId;
      report.verified.push({ format, keyId: verdict.keyId, key, signatureDigest });
    } else {
      report.rejected.push({ format, code: verdict.code, reason: verdict.reason, signatureDigest });
    }
  };

  // The two formats live in different places; read both at once (each is a few round trips).
  const [legacy, bundles] = await Promise.all([
    legacyPayloads(target, subject),
    bundleReferrers(target, subject),
  ]);
  for (const { layer, payload } of legacy) {
    const verdict = verifyLegacySignature(
      { mediaType: layer.mediaType, payload, annotations: layer.annotations ?? {} },
      subject.digest,
      trustedKeys,
    );
    if (verdict) record('legacy', layer.digest, verdict);
  }
  for (const { digest, bundle } of bundles) {
    record('bundle', digest, await verifySignatureBundle(bundle, subject.digest, trustedKeys));
  }
  return report;
}

/**
 * Throws unless at least one signature by a trusted key names exactly `subject`: SIGNATURE_MISSING
 * (none at all), SIGNATURE_INVALID (a trusted key signed something else, or a signature is malformed),
 * SIGNATURE_UNTRUSTED (signed, but by no trusted key).
 */
export async function requireTrustedSignature(
  target: Target,
  subject: Descriptor,
  trustedKeys: TrustedKey[],
): Promise<SignatureReport> {
  if (trustedKeys.length === 0) throw new SplinterError('TRUST_REQUIRED', 'no trusted public key was given');
  const report = await verifySignatures(target, subject, trustedKeys);
  if (report.verified.length > 0) return report;
  if (report.rejected.length === 0)
    throw new SplinterError('SIGNATURE_MISSING', `${subject.digest} has no signatures`);
  const invalid = report.rejected.find((r) => r.code === 'SIGNATURE_INVALID');
  if (invalid)
    throw new SplinterError(
      'SIGNATURE_INVALID',
      `${subject.digest}: ${invalid.format} signature: ${invalid.reason}`,
      {
        details: { rejected: report.rejected },
      },
    );
  throw new SplinterError('SIGNATURE_UNTRUSTED', `${subject.digest}: signed, but by no trusted key`, {
    details: { rejected: report.rejected },
  });
}

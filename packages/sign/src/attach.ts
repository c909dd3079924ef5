import { createPublicKey, verify } from 'node:crypto';
import {
  Annotation,
  confirmedMerge,
  type Descriptor,
  type Digest,
  descriptorFor,
  EMPTY_JSON,
  type ImageManifest,
  MediaType,
  type Target,
} from '@splintertree/oci';
import { COSIGN_SIGN_PREDICATE_TYPE, createSignatureBundle, SIGSTORE_BUNDLE_MEDIA_TYPE } from './bundle.js';
import { keyIdOf, type Signer, type TrustedKey } from './keys.js';
import { SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, simpleSigningPayload } from './legacy.js';
import { legacySignatureTag, readSignatureImage } from './signature-images.js';
import { verifiedBundles } from './verify.js';

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

  let layer = (await readSignatureImage(target, tag))?.manifest.layers.find(ours);
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
    present: async () => (await readSignatureImage(target, tag))?.manifest.layers.some(ours) === true,
    merge: async () => {
      const existing = (await readSignatureImage(target, tag))?.manifest.layers ?? [];
      if (!existing.some(ours)) await writeSignatureImage(target, tag, [...existing, signed]);
    },
  });
  return { tag, layer: signed };
}

/**
 * Attaches a Sigstore bundle v0.3 as an OCI referrer of `subject`, laid out as cosign v3 writes it
 * (pushed by digest, untagged; registries without the referrers API get the `sha256-<hex>` index).
 * A release signature of ours already attached to this subject is kept instead of adding another
 * (an attestation by the same key is not one).
 */
export async function attachSignatureBundle(
  target: Target,
  subject: Descriptor,
  signer: Signer,
  createdAt: Date = new Date(),
): Promise<{ digest: Digest }> {
  const publicKey = createPublicKey(signer.publicKeyPem);
  const ourKey: TrustedKey = { keyObject: publicKey, keyId: keyIdOf(publicKey), source: 'signer' };
  const [existing] = await verifiedBundles(target, subject, ourKey);
  if (existing) return { digest: existing };
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

import { setTimeout as sleep } from 'node:timers/promises';
import { SplinterError } from '@splinter/errors';
import {
  type Descriptor,
  descriptorFor,
  digestHex,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  MediaType,
  parseManifest,
  readAllLimited,
  type Target,
} from '@splinter/oci';
import type { Signer, TrustedKey } from './keys.js';
import {
  type LegacyVerdict,
  SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
  simpleSigningPayload,
  verifyLegacySignature,
} from './legacy.js';

/** cosign's tag for the legacy signature image of a manifest: `sha256-<hex>.sig`. */
export function legacySignatureTag(subject: Pick<Descriptor, 'digest'>): string {
  return `sha256-${digestHex(subject.digest)}.sig`;
}

const CONFIRM_ROUNDS = 2;
const MAX_MERGE_ATTEMPTS = 8;

/**
 * Appends a cosign legacy signature to `sha256-<hex>.sig`: read the signature image, add our layer
 * (dropping an identical one), push blobs, config and manifest, retag. Registries offer no conditional
 * PUT, so two signers can overwrite each other; we re-read after writing and merge again until our layer
 * survives two reads a short random delay apart (bounded).
 */
export async function attachLegacySignature(
  target: Target,
  subject: Descriptor,
  signer: Signer,
  dockerReference: string,
): Promise<{ tag: string; layer: Descriptor }> {
  const payload = simpleSigningPayload(subject.digest, dockerReference);
  const signature = Buffer.from(await signer.sign(payload)).toString('base64');
  const layer: Descriptor = {
    ...descriptorFor(SIMPLE_SIGNING_MEDIA_TYPE, payload),
    annotations: { [SIGNATURE_ANNOTATION]: signature },
  };
  await target.push(layer, payload);
  const tag = legacySignatureTag(subject);
  for (let attempt = 0; attempt < MAX_MERGE_ATTEMPTS; attempt++) {
    const readAt = Date.now();
    const existing = await readSignatureImage(target, tag);
    const layers = (existing?.layers ?? []).filter((l) => !samePayloadBySameKey(l, layer));
    if (
      !existing?.layers.some(
        (l) => l.digest === layer.digest && l.annotations?.[SIGNATURE_ANNOTATION] === signature,
      )
    ) {
      layers.push(layer);
      await writeSignatureImage(target, tag, layers);
    }
    // A rival that read before our write lands its own within about one read-merge-write window of
    // ours, so each confirmation waits a few of our windows: slow registries get proportionally longer.
    const window = Date.now() - readAt;
    let confirmed = 0;
    for (; confirmed < CONFIRM_ROUNDS; confirmed++) {
      await sleep(Math.max(20, 2 * window) + Math.floor(Math.random() * Math.max(80, window)));
      const now = await readSignatureImage(target, tag);
      if (!now?.layers.some((l) => l.annotations?.[SIGNATURE_ANNOTATION] === signature)) break;
    }
    if (confirmed === CONFIRM_ROUNDS) return { tag, layer };
  }
  throw new SplinterError(
    'REGISTRY_ERROR',
    `could not keep a signature on ${tag}: concurrent signers kept overwriting it`,
  );
}

/** cosign drops a new signature when the same payload is already signed by the same key. */
function samePayloadBySameKey(existing: Descriptor, candidate: Descriptor): boolean {
  return (
    existing.digest === candidate.digest &&
    existing.annotations?.[SIGNATURE_ANNOTATION] === candidate.annotations?.[SIGNATURE_ANNOTATION]
  );
}

async function readSignatureImage(target: Target, tag: string): Promise<ImageManifest | undefined> {
  let descriptor: Descriptor;
  try {
    descriptor = await target.resolve(tag);
  } catch (error) {
    if ((error as { code?: string }).code === 'NOT_FOUND') return undefined;
    throw error;
  }
  const manifest = parseManifest(
    await readAllLimited(await target.fetch(descriptor), MAX_MANIFEST_BYTES),
    descriptor.mediaType,
  );
  return 'layers' in manifest ? manifest : undefined;
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

export interface SignatureReport {
  verified: Array<{ format: 'legacy'; keyId: string; signatureDigest: string }>;
  rejected: Array<{ format: 'legacy'; code: string; reason: string; signatureDigest: string }>;
}

/**
 * Checks the legacy signatures of `subject`, reading only the signature image and its payloads — never
 * the subject's content. Layers that are not simple-signing payloads are someone else's attachments.
 */
export async function verifyLegacySignatures(
  target: Target,
  subject: Descriptor,
  trustedKeys: TrustedKey[],
): Promise<SignatureReport> {
  const report: SignatureReport = { verified: [], rejected: [] };
  const image = await readSignatureImage(target, legacySignatureTag(subject));
  for (const layer of image?.layers ?? []) {
    if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE || layer.size > 64 * 1024) continue;
    const payload = await readAllLimited(await target.fetch(layer), 64 * 1024);
    const verdict: LegacyVerdict | undefined = verifyLegacySignature(
      { mediaType: layer.mediaType, payload, annotations: layer.annotations ?? {} },
      subject.digest,
      trustedKeys,
    );
    if (!verdict) continue;
    if (verdict.ok)
      report.verified.push({ format: 'legacy', keyId: verdict.keyId, signatureDigest: layer.digest });
    else
      report.rejected.push({
        format: 'legacy',
        code: verdict.code,
        reason: verdict.reason,
        signatureDigest: layer.digest,
      });
  }
  return report;
}

/** Throws unless at least one trusted signature names exactly `subject`: SIGNATURE_MISSING, _UNTRUSTED or _INVALID. */
export async function requireTrustedSignature(
  target: Target,
  subject: Descriptor,
  trustedKeys: TrustedKey[],
): Promise<SignatureReport['verified']> {
  const report = await verifyLegacySignatures(target, subject, trustedKeys);
  if (report.verified.length > 0) return report.verified;
  if (report.rejected.length === 0)
    throw new SplinterError('SIGNATURE_MISSING', `${subject.digest} has no signatures`);
  const invalid = report.rejected.find((r) => r.code === 'SIGNATURE_INVALID');
  if (invalid) throw new SplinterError('SIGNATURE_INVALID', `${subject.digest}: ${invalid.reason}`);
  throw new SplinterError('SIGNATURE_UNTRUSTED', `${subject.digest}: signed, but by no trusted key`);
}

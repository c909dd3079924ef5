import {
  type Descriptor,
  digestHex,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  parseManifest,
  readAllLimited,
  type Target,
} from '@splintertree/oci';

/**
 * At most this many signatures of one format are considered per artifact: the `.sig` image's
 * simple-signing layers, or the bundle referrers. cosign refuses more than 100 of either
 * (`maxAllowedSigsOrAtts`, since its fix for CVE-2023-46737); we read the first 100 and report the rest.
 */
export const MAX_SIGNATURES_CONSIDERED = 100;
/** A simple-signing payload is a JSON object of about 250 bytes; 64 KiB leaves room for `optional`. */
export const MAX_LEGACY_PAYLOAD_BYTES = 64 * 1024;
/**
 * A release-signature bundle is about 1.5 KiB offline and 5-15 KiB with a certificate chain and a
 * transparency-log entry. Attestation bundles (an SBOM) can be far larger; they are not release
 * signatures, so a bundle over this size is not read.
 */
export const MAX_BUNDLE_BYTES = 256 * 1024;
/** Signature blobs read at once: memory held is at most this many times the blob limit. */
export const SIGNATURE_READ_CONCURRENCY = 4;

export const BUNDLE_MEDIA_TYPE_PREFIX = 'application/vnd.dev.sigstore.bundle';

/** cosign's tag for the legacy signature image of a manifest: `sha256-<hex>.sig`. */
export function legacySignatureTag(subject: Pick<Descriptor, 'digest'>): string {
  return `sha256-${digestHex(subject.digest)}.sig`;
}

export async function readImageManifest(
  target: Target,
  descriptor: Descriptor,
): Promise<ImageManifest | undefined> {
  const manifest = parseManifest(
    await readAllLimited(await target.fetch(descriptor), MAX_MANIFEST_BYTES),
    descriptor.mediaType,
  );
  return 'layers' in manifest ? manifest : undefined;
}

/** The `.sig` image at `tag` with its descriptor, or undefined when the tag does not exist. */
export async function readSignatureImage(
  target: Target,
  tag: string,
): Promise<{ descriptor: Descriptor; manifest: ImageManifest } | undefined> {
  let descriptor: Descriptor;
  try {
    descriptor = await target.resolve(tag);
  } catch (error) {
    if ((error as { code?: string }).code === 'NOT_FOUND') return undefined;
    throw error;
  }
  const manifest = await readImageManifest(target, descriptor);
  return manifest && { descriptor, manifest };
}

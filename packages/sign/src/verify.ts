import { SplinterError } from '@splintertree/errors';
import {
  type Descriptor,
  type Digest,
  MAX_MANIFEST_BYTES,
  readAllLimited,
  runLimited,
  type Target,
} from '@splintertree/oci';
import { type BundleVerdict, COSIGN_SIGN_PREDICATE_TYPE, verifySignatureBundle } from './bundle.js';
import type { TrustedKey } from './keys.js';
import { type LegacyVerdict, SIMPLE_SIGNING_MEDIA_TYPE, verifyLegacySignature } from './legacy.js';
import {
  BUNDLE_MEDIA_TYPE_PREFIX,
  legacySignatureTag,
  MAX_BUNDLE_BYTES,
  MAX_LEGACY_PAYLOAD_BYTES,
  MAX_SIGNATURES_CONSIDERED,
  readImageManifest,
  readSignatureImage,
  SIGNATURE_READ_CONCURRENCY,
} from './signature-images.js';

export type SignatureFormat = 'legacy' | 'bundle';

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

/**
 * Found beside the signatures but not a release signature, or past the limits of what is read: an
 * attestation of another predicate type, a bundle too large to be a signature, the 101st signature.
 */
export interface IgnoredSignature {
  format: SignatureFormat;
  reason: string;
  /** The bundle referrer's manifest digest, or the `.sig` image's when layers past the limit are cut. */
  signatureDigest: string;
}

export interface SignatureReport {
  verified: VerifiedSignature[];
  rejected: RejectedSignature[];
  ignored: IgnoredSignature[];
}

type Verdict = LegacyVerdict | BundleVerdict;
type Finding = { signatureDigest: string } & (Verdict | { ok: false; code: 'IGNORED'; reason: string });

const PREDICATE_TYPE_ANNOTATION = 'dev.sigstore.bundle.predicateType';

/**
 * Checks every signature of `subject` in both formats, reading only signature images, referrer
 * manifests and their small blobs — never the subject's content. At most MAX_SIGNATURES_CONSIDERED
 * signatures of each format are read, SIGNATURE_READ_CONCURRENCY at a time, each blob within its limit;
 * what lies past a limit is reported in `ignored`, not read.
 */
export async function verifySignatures(
  target: Target,
  subject: Descriptor,
  trustedKeys: TrustedKey[],
): Promise<SignatureReport> {
  const report: SignatureReport = { verified: [], rejected: [], ignored: [] };
  const record = (format: SignatureFormat, findings: Finding[]) => {
    for (const finding of findings) {
      const { signatureDigest } = finding;
      if (finding.ok) {
        const key = trustedKeys.find((k) => k.keyId === finding.keyId)?.source ?? finding.keyId;
        report.verified.push({ format, keyId: finding.keyId, key, signatureDigest });
      } else if (finding.code === 'SIGNATURE_INVALID' || finding.code === 'SIGNATURE_UNTRUSTED') {
        report.rejected.push({ format, code: finding.code, reason: finding.reason, signatureDigest });
      } else {
        report.ignored.push({ format, reason: finding.reason, signatureDigest });
      }
    }
  };
  // The two formats live in different places; read both at once (each is a few round trips).
  const [legacy, bundles] = await Promise.all([
    legacyFindings(target, subject, trustedKeys),
    bundleFindings(target, subject, trustedKeys),
  ]);
  record('legacy', legacy);
  record('bundle', bundles);
  return report;
}

/** The simple-signing layers of `sha256-<hex>.sig`; layers of other media types are not signatures. */
async function legacyFindings(
  target: Target,
  subject: Descriptor,
  trustedKeys: TrustedKey[],
): Promise<Finding[]> {
  const image = await readSignatureImage(target, legacySignatureTag(subject));
  if (!image) return [];
  const layers = image.manifest.layers.filter((layer) => layer.mediaType === SIMPLE_SIGNING_MEDIA_TYPE);
  const findings = await mapLimited(
    layers.slice(0, MAX_SIGNATURES_CONSIDERED),
    async (layer): Promise<Finding> => {
      if (layer.size > MAX_LEGACY_PAYLOAD_BYTES) {
        const reason = `payload of ${layer.size} bytes is over the ${MAX_LEGACY_PAYLOAD_BYTES}-byte limit`;
        return { signatureDigest: layer.digest, ok: false, code: 'SIGNATURE_INVALID', reason };
      }
      const payload = await readAllLimited(await target.fetch(layer), MAX_LEGACY_PAYLOAD_BYTES);
      const annotations = layer.annotations ?? {};
      const verdict = verifyLegacySignature(
        { mediaType: layer.mediaType, payload, annotations },
        subject.digest,
        trustedKeys,
      );
      // The media type was filtered above, so there is always a verdict.
      return { signatureDigest: layer.digest, ...(verdict as LegacyVerdict) };
    },
  );
  if (layers.length > MAX_SIGNATURES_CONSIDERED) {
    findings.push(
      ignored(
        image.descriptor.digest,
        `${layers.length - MAX_SIGNATURES_CONSIDERED} signature layers past the first ${MAX_SIGNATURES_CONSIDERED} of ${legacySignatureTag(subject)} were not read`,
      ),
    );
  }
  return findings;
}

/**
 * The bundles among `subject`'s referrers, read as cosign reads them: a manifest with exactly one layer
 * of a Sigstore bundle media type. Other referrers are someone else's attachments and are skipped; a
 * bundle annotated with another predicate type is reported without reading it (its payload is checked
 * whenever it is read, so the annotation can hide a bundle but never make one count).
 */
async function bundleFindings(
  target: Target,
  subject: Descriptor,
  trustedKeys: TrustedKey[],
): Promise<Finding[]> {
  const referrers = (await target.referrers(subject)).filter(
    (referrer) =>
      referrer.artifactType === undefined || referrer.artifactType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX),
  );
  const manifestBytes = once(async () => readAllLimited(await target.fetch(subject), MAX_MANIFEST_BYTES));
  const findings = (
    await mapLimited(
      referrers.slice(0, MAX_SIGNATURES_CONSIDERED),
      async (referrer): Promise<Finding | undefined> => {
        const manifest = await readImageManifest(target, referrer);
        const layer = manifest?.layers.length === 1 ? manifest.layers[0] : undefined;
        if (!layer?.mediaType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX)) return undefined;
        const predicateType = manifest?.annotations?.[PREDICATE_TYPE_ANNOTATION];
        if (predicateType !== undefined && predicateType !== COSIGN_SIGN_PREDICATE_TYPE)
          return ignored(
            referrer.digest,
            `annotated as an attestation of predicate type ${predicateType}; not read`,
          );
        if (layer.size > MAX_BUNDLE_BYTES) {
          return ignored(
            referrer.digest,
            `bundle of ${layer.size} bytes is over the ${MAX_BUNDLE_BYTES} bytes a release signature can be; not read`,
          );
        }
        const bundle = await readAllLimited(await target.fetch(layer), MAX_BUNDLE_BYTES);
        const verdict = await verifySignatureBundle(bundle, subject.digest, trustedKeys, manifestBytes);
        return { signatureDigest: referrer.digest, ...verdict };
      },
    )
  ).filter((finding) => finding !== undefined);
  if (referrers.length > MAX_SIGNATURES_CONSIDERED) {
    const first = referrers[MAX_SIGNATURES_CONSIDERED] as Descriptor;
    findings.push(
      ignored(
        first.digest,
        `this and ${referrers.length - MAX_SIGNATURES_CONSIDERED - 1} later bundle referrers past the first ${MAX_SIGNATURES_CONSIDERED} were not read`,
      ),
    );
  }
  return findings;
}

/** The bundles by one key that already count as release signatures of `subject`. */
export async function verifiedBundles(
  target: Target,
  subject: Descriptor,
  key: TrustedKey,
): Promise<Digest[]> {
  return (await bundleFindings(target, subject, [key])).flatMap((finding) =>
    finding.ok ? [finding.signatureDigest as Digest] : [],
  );
}

function ignored(signatureDigest: string, reason: string): Finding {
  return { signatureDigest, ok: false, code: 'IGNORED', reason };
}

/** `task` over `items`, a few at a time, results in the items' order. */
async function mapLimited<T, R>(items: T[], task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  const indexed = items.map((item, index) => ({ item, index }));
  await runLimited(indexed, SIGNATURE_READ_CONCURRENCY, async ({ item, index }) => {
    results[index] = await task(item);
  });
  return results;
}

function once<T>(load: () => Promise<T>): () => Promise<T> {
  let loaded: Promise<T> | undefined;
  return () => {
    loaded ??= load();
    return loaded;
  };
}

/**
 * Throws unless at least one signature by a trusted key names exactly `subject`: SIGNATURE_MISSING
 * (no release signature at all: attestations and what lies past the limits do not count),
 * SIGNATURE_INVALID (a trusted key signed another manifest, or a signature is malformed),
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
  const details = { rejected: report.rejected, ignored: report.ignored };
  if (report.rejected.length === 0) {
    const found = report.ignored.length;
    const besides =
      found === 0
        ? ''
        : ` (${found} found beside them do not count: ${report.ignored[0]?.reason}${found > 1 ? ', ...' : ''})`;
    throw new SplinterError('SIGNATURE_MISSING', `${subject.digest} has no release signatures${besides}`, {
      details,
    });
  }
  const invalid = report.rejected.find((r) => r.code === 'SIGNATURE_INVALID');
  if (invalid)
    throw new SplinterError(
      'SIGNATURE_INVALID',
      `${subject.digest}: ${invalid.format} signature: ${invalid.reason}`,
      { details },
    );
  throw new SplinterError('SIGNATURE_UNTRUSTED', `${subject.digest}: signed, but by no trusted key`, {
    details,
  });
}

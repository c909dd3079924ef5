import type { Signer, TrustedKey } from '@splintertree/sign';
import { requireTrustedSignature } from '@splintertree/sign';
import type { CoreContext } from './context.js';
import { fetchManifest } from './install.js';
import { formatLocation } from './locations.js';
import { signManifest } from './signing.js';
import type { InspectResult, SignatureFormat, SignResult, VerifyResult } from './types.js';

/** What is done to an artifact already stored, without downloading its content: sign, verify, inspect. */

/** Signs an artifact that is already stored (`splinter sign`). */
export async function sign(
  ctx: CoreContext,
  input: { reference: string; signer: Signer; format?: SignatureFormat },
): Promise<SignResult> {
  const { location, target, descriptor } = await ctx.locate(input.reference);
  const signatures = await signManifest(target, descriptor, input.signer, input.format ?? 'both', location);
  return {
    digest: descriptor.digest,
    reference: formatLocation({ ...location, digest: descriptor.digest }),
    signatures,
  };
}

/**
 * Reports which signatures of an artifact verify under `keys` (`splinter verify`). Throws as a pull
 * would (SIGNATURE_MISSING / _UNTRUSTED / _INVALID) unless at least one does.
 */
export async function verify(
  ctx: CoreContext,
  input: { reference: string; keys: TrustedKey[] },
): Promise<VerifyResult> {
  const { location, target, descriptor } = await ctx.locate(input.reference);
  const report = await requireTrustedSignature(target, descriptor, input.keys);
  return {
    digest: descriptor.digest,
    reference: formatLocation({ ...location, digest: descriptor.digest }),
    ...report,
  };
}

export async function inspect(ctx: CoreContext, reference: string): Promise<InspectResult> {
  const { location, target, descriptor } = await ctx.locate(reference);
  const manifest = await fetchManifest(target, descriptor);
  const referrers = await target.referrers(descriptor);
  return {
    reference: formatLocation({ ...location, digest: descriptor.digest }),
    digest: descriptor.digest,
    mediaType: descriptor.mediaType,
    artifactType: manifest.artifactType,
    annotations: manifest.annotations ?? {},
    layers: manifest.layers.map((layer) => ({
      digest: layer.digest,
      size: layer.size,
      mediaType: layer.mediaType,
      title: layer.annotations?.['org.opencontainers.image.title'],
    })),
    referrers: referrers.map((r) => ({
      digest: r.digest,
      mediaType: r.mediaType,
      artifactType: r.artifactType,
    })),
  };
}

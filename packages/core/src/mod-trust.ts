import type { ModPin, ModTrust } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import { requireTrustedSignature, type TrustedKey } from '@splintertree/sign';
import { assertArtifactKind } from './artifact.js';
import { type CoreContext, pinned } from './context.js';
import { fetchManifest } from './install.js';
import { formatLocation } from './locations.js';
import { validateName } from './names.js';
import { publicKeysFromPem, publicKeysToPem } from './signing.js';

/** The keys a realm trusts to sign its patches' mods (cluster.realm_mod_trust), and the checks on them. */

/** A realm's mod trust as commands show it: the keys by id, never the PEM again. */
export interface ModTrustView {
  realm: string;
  keys: { keyId: string }[];
  setBy: string;
  setAt: string;
}

/** Stores the keys the realm trusts to sign its patches' mods, replacing any earlier set. */
export async function setModTrust(
  ctx: CoreContext,
  realm: string,
  keys: TrustedKey[],
  actor: string,
): Promise<ModTrustView> {
  if (keys.length === 0)
    throw new SplinterError('TRUST_REQUIRED', 'a mod trust policy needs at least one key');
  const stored = await (await ctx.chain()).setModTrust(
    validateName('realm', realm),
    publicKeysToPem(keys),
    actor,
  );
  return modTrustView(stored);
}

export async function modTrust(ctx: CoreContext, realm: string): Promise<ModTrustView | null> {
  const stored = await (await ctx.chain()).modTrust(realm);
  return stored ? modTrustView(stored) : null;
}

export async function clearModTrust(ctx: CoreContext, realm: string): Promise<boolean> {
  return (await ctx.chain()).clearModTrust(realm);
}

/**
 * Every mod must carry a signature by a key the realm trusts (the keys given, else the stored policy),
 * or nothing happens: MOD_UNTRUSTED names the mod and why, the underlying code in its details.
 */
export async function requireTrustedMods(
  ctx: CoreContext,
  realm: string,
  mods: ModPin[],
  given: TrustedKey[] | undefined,
): Promise<void> {
  let keys = given && given.length > 0 ? given : undefined;
  if (!keys) {
    const stored = await (await ctx.chain()).modTrust(realm).catch((error: unknown) => {
      if ((error as { code?: string }).code === 'REALM_UNKNOWN') return null;
      throw error;
    });
    if (!stored) {
      throw new SplinterError('MOD_UNTRUSTED', `realm ${realm} trusts no mod keys and none were given`, {
        details: { reason: 'no-mod-trust', realm, mods: mods.map((m) => m.reference) },
      });
    }
    keys = publicKeysFromPem(stored.keys, `realm ${realm} mod trust`);
  }
  for (const mod of mods) {
    try {
      const { target, descriptor } = await ctx.locate(mod.reference);
      if (descriptor.digest !== mod.digest) {
        throw new SplinterError('DIGEST_MISMATCH', `resolves to ${descriptor.digest}, not ${mod.digest}`);
      }
      await requireTrustedSignature(target, descriptor, keys);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (
        !code ||
        !['SIGNATURE_MISSING', 'SIGNATURE_UNTRUSTED', 'SIGNATURE_INVALID', 'DIGEST_MISMATCH'].includes(code)
      ) {
        throw error;
      }
      throw new SplinterError(
        'MOD_UNTRUSTED',
        `mod ${mod.reference} is not signed by a key realm ${realm} trusts: ${(error as Error).message}`,
        { cause: error, details: { realm, mod: mod.reference, reason: code } },
      );
    }
  }
}

/** A mod reference resolved and pinned by digest, refused unless it is a mod. */
export async function pinMod(ctx: CoreContext, reference: string): Promise<ModPin> {
  const { location, target, descriptor } = await ctx.locate(reference);
  const manifest = await fetchManifest(target, descriptor);
  assertArtifactKind(manifest, 'mod', `bundled mod ${reference}`);
  return { reference: formatLocation(pinned(location, descriptor.digest)), digest: descriptor.digest };
}

function modTrustView(stored: ModTrust): ModTrustView {
  return {
    realm: stored.realm,
    keys: publicKeysFromPem(stored.keys, stored.realm).map((key) => ({ keyId: key.keyId })),
    setBy: stored.setBy,
    setAt: stored.setAt,
  };
}

import type { ChainStore, PatchRow } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import { ArtifactAnnotation } from './artifact.js';
import { type CoreContext, pinned } from './context.js';
import { fetchManifest } from './install.js';
import { destinationFor, formatLocation } from './locations.js';
import { pinMod, requireTrustedMods } from './mod-trust.js';
import { validateName, validateVersion } from './names.js';
import { preparePreload } from './preload.js';
import { createdSeconds } from './repush.js';
import type { PushInput, PushResult } from './types.js';
import { upload } from './upload.js';

/** A push: the checks of its kind first (a refused push moves no bytes), then the shared upload. */
export function push(ctx: CoreContext, input: PushInput): Promise<PushResult> {
  return input.kind === 'patch' ? pushPatch(ctx, input) : pushMod(ctx, input);
}

async function pushMod(ctx: CoreContext, input: PushInput): Promise<PushResult> {
  const version = validateVersion(input.version);
  const name = validateName('mod name', required(input.name, 'a mod push needs a name', 'name-required'));
  const destination = destinationFor(input.registry ?? ctx.settings.modRegistry, 'mods', name, version);
  if (input.preload || input.parent !== undefined || (input.mods?.length ?? 0) > 0) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      'a preload, a parent and bundled mods apply to patches only',
      {
        details: { reason: 'patch-only' },
      },
    );
  }
  const { result } = await upload(ctx, input, {
    leaf: name,
    version,
    destination,
    target: await ctx.stores.target(destination),
    annotations: { [ArtifactAnnotation.Version]: version, [ArtifactAnnotation.ModName]: name },
    createdAt: ctx.settings.sourceDateEpoch,
    base: { reference: input.base, chainIds: [] },
  });
  return result;
}

/**
 * A patch is checked against the chain before anything is uploaded. A version that exists may only be
 * pushed again as the same one (a re-run CI job): it is built against itself and any blob the registry
 * does not already hold is refused.
 */
async function pushPatch(ctx: CoreContext, input: PushInput): Promise<PushResult> {
  const version = validateVersion(input.version);
  const realm = validateName('realm', required(input.realm, 'a patch push needs a realm', 'realm-required'));
  const destination = destinationFor(input.registry ?? ctx.settings.patchRegistry, 'patches', realm, version);
  const chain = await ctx.chain();
  const existing = await chain.findVersion(realm, version);
  const otherContent = (why: string) =>
    new SplinterError('PATCH_EXISTS', `realm ${realm} already has a patch version ${version} ${why}`, {
      details: { id: existing?.id, digest: existing?.digest },
    });
  if (existing && input.preload) {
    throw otherContent('(a preload is sealed under a new key, so it is never pushed twice)');
  }
  const asked = input.parent !== undefined ? await chain.findPatch(input.parent, realm) : undefined;
  if (existing && asked && asked.id !== existing.parent) throw otherContent(`with parent ${existing.parent}`);
  const parent = existing ? undefined : asked;
  const mods = await Promise.all((input.mods ?? []).map((reference) => pinMod(ctx, reference)));
  if (mods.length > 0) await requireTrustedMods(ctx, realm, mods, input.modTrust);
  const preload = input.preload ? await preparePreload(ctx.settings, await ctx.access()) : undefined;

  const target = await ctx.stores.target(destination);
  // A re-push builds the manifest the first push built: its time, and a parent only if it named one.
  const existingAnnotations = existing
    ? ((await fetchManifest(target, await target.resolve(existing.digest))).annotations ?? {})
    : undefined;
  const parentVersion = existingAnnotations
    ? existingAnnotations[ArtifactAnnotation.Parent]
    : parent?.version;
  const annotations: Record<string, string> = {
    [ArtifactAnnotation.Version]: version,
    [ArtifactAnnotation.Realm]: realm,
  };
  if (parentVersion !== undefined) annotations[ArtifactAnnotation.Parent] = parentVersion;
  if (mods.length > 0) annotations[ArtifactAnnotation.Mods] = JSON.stringify(mods);
  // Chunks are reused from the parent, else the head, else the realm's newest patch (a draft, say).
  const baseRow = existing ?? parent ?? (input.parent === undefined ? await dedupBase(chain, realm) : null);

  const { result, manifest } = await upload(ctx, input, {
    leaf: realm,
    version,
    destination,
    target,
    annotations,
    createdAt: existingAnnotations ? createdSeconds(existingAnnotations) : ctx.settings.sourceDateEpoch,
    patchKey: preload?.key,
    base: { reference: baseRow?.reference ?? input.base, chainIds: baseRow?.chain ?? [] },
    unchanged: existing
      ? (blob) =>
          otherContent(`with other content (${blob ? `its ${blob.mediaType} differs` : 'tags differ'})`)
      : undefined,
  });
  if (existing) {
    result.id = existing.id;
    result.status = existing.status;
    result.parent = existing.parent;
    result.alreadyPushed = true;
    return result;
  }
  const row = await chain.registerPatch({
    realm,
    version,
    parent: parent?.id,
    reference: formatLocation(pinned(destination, manifest.digest)),
    digest: manifest.digest,
    status: preload ? 'preload' : 'draft',
    mods,
    key: preload?.stored,
  });
  if (preload) result.keyId = preload.keyId;
  result.id = row.id;
  result.status = row.status;
  result.parent = row.parent;
  if (input.parent === undefined) await warnOfNewerDrafts(ctx, chain, row);
  return result;
}

/** A push without --parent builds on the head; say so when drafts newer than the head exist. */
async function warnOfNewerDrafts(ctx: CoreContext, chain: ChainStore, pushed: PatchRow): Promise<void> {
  const drafts = (await chain.listPatches(pushed.realm)).filter(
    (p) => p.status === 'draft' && p.id !== pushed.id && BigInt(p.id) > BigInt(pushed.parent ?? '0'),
  );
  if (drafts.length === 0) return;
  ctx.warn(
    `${pushed.realm} has drafts newer than its head (${drafts.map((p) => p.version).join(', ')}): ` +
      `${pushed.version} builds on ${pushed.parent === null ? 'nothing' : `the head (patch ${pushed.parent})`}`,
    { reason: 'newer-drafts', realm: pushed.realm },
  );
}

/** The realm's head, else its newest patch that is not revoked; null for a new realm. */
async function dedupBase(chain: ChainStore, realm: string): Promise<PatchRow | null> {
  try {
    const { head } = await chain.showRealm(realm);
    if (head) return chain.findPatch(head.id, realm);
    const patches = (await chain.listPatches(realm)).filter((p) => p.status !== 'revoked');
    return patches.reduce<PatchRow | null>(
      (newest, p) => (!newest || BigInt(p.id) > BigInt(newest.id) ? p : newest),
      null,
    );
  } catch (error) {
    if ((error as { code?: string }).code === 'REALM_UNKNOWN') return null;
    throw error;
  }
}

function required(value: string | undefined, message: string, reason: string): string {
  if (value === undefined) throw new SplinterError('INVALID_ARGUMENT', message, { details: { reason } });
  return value;
}

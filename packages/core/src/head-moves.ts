import type { ReleaseRow, StoredStatement } from '@splintertree/chain';
import type { TrustedKey } from '@splintertree/sign';
import type { CoreContext } from './context.js';
import { requireTrustedMods } from './mod-trust.js';
import { type ReleaseSigning, statementSigner } from './release.js';
import { publishOrWarn, warnOfUnsignedRelease } from './releases.js';

/** Moving a realm's head: activation and rollback, each a compare-and-set on the head read first. */

export interface ActivateInput {
  patch: string;
  realm?: string | undefined;
  force: boolean;
  actor: string;
  /** Keys the patch's mods must be signed by; unset means the realm's stored mod trust. */
  modTrust?: TrustedKey[] | undefined;
  /** Sign a release statement with this release key in the activation's transaction. */
  release?: ReleaseSigning | undefined;
}

export interface RollbackInput {
  realm: string;
  to?: string | undefined;
  actor: string;
  /** Keys the target's mods must be signed by; unset means the realm's stored mod trust. */
  modTrust?: TrustedKey[] | undefined;
  /** Sign a release statement with this release key in the rollback's transaction. */
  release?: ReleaseSigning | undefined;
}

export type HeadMove = ReleaseRow & { statement?: StoredStatement };

/** Activates a patch (an id, or a version with `realm`) with a compare-and-set on the head read first. */
export async function activate(ctx: CoreContext, input: ActivateInput): Promise<HeadMove> {
  const chain = await ctx.chain();
  const patch = await chain.findPatch(input.patch, input.realm);
  // Checked again here, not only at push: the policy or the signatures may have changed since, and
  // this is the last step before the mods go live (--force does not skip it).
  if (patch.mods.length > 0) await requireTrustedMods(ctx, patch.realm, patch.mods, input.modTrust);
  const seen = (await chain.showRealm(patch.realm, { ancestors: 0 })).head?.id ?? null;
  if (!input.release) await warnOfUnsignedRelease(ctx, patch.realm);
  const moved = await chain.activate({
    patchId: patch.id,
    realm: input.realm,
    expectedHead: seen,
    actor: input.actor,
    force: input.force,
    statement: input.release ? statementSigner(input.release) : undefined,
  });
  if (moved.statement) await publishOrWarn(ctx, moved.statement);
  return moved;
}

export async function rollback(ctx: CoreContext, input: RollbackInput): Promise<HeadMove> {
  const chain = await ctx.chain();
  const to = input.to === undefined ? undefined : (await chain.findPatch(input.to, input.realm)).id;
  // The patch the head moves back to goes live again: its mods are checked as at activation, against
  // the policy of now (a key retired since is no longer trusted). The head read here is compared and
  // set, so the patch checked is the patch made head.
  const head = (await chain.showRealm(input.realm, { ancestors: 0 })).head;
  const target = to ?? head?.parent ?? undefined;
  if (target !== undefined) {
    const patch = await chain.getPatch(target); // an id: a version may look like one
    if (patch.mods.length > 0) await requireTrustedMods(ctx, input.realm, patch.mods, input.modTrust);
  }
  if (!input.release) await warnOfUnsignedRelease(ctx, input.realm);
  const moved = await chain.rollback({
    realm: input.realm,
    toId: target,
    expectedHead: head?.id ?? null,
    actor: input.actor,
    statement: input.release ? statementSigner(input.release) : undefined,
  });
  if (moved.statement) await publishOrWarn(ctx, moved.statement);
  return moved;
}

import { join } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import type { CoreContext } from './context.js';
import { combine, neededRanges, type PruneResult, pruneIndexes } from './retention.js';

/**
 * Shrinks the client cache to what the versions worth keeping need: every version a folder holds now,
 * the `keep` newest installed ones (what a rollback to them reads) and staged preloads (`preloads`, by
 * manifest digest, when the caller knows them). Packs nothing needs are deleted, others rewritten to
 * their needed ranges; decoded indexes no kept version uses are deleted.
 */
export async function pruneCache(
  ctx: CoreContext,
  input: { keep: number; preloads?: string[] | undefined },
): Promise<PruneResult> {
  if (!Number.isSafeInteger(input.keep) || input.keep < 1) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `the number of installed versions to keep must be a whole number >= 1, not ${input.keep}`,
      { details: { reason: 'keep-invalid', keep: input.keep } },
    );
  }
  const state = await ctx.clientState();
  const current = await state.currentInstalls();
  const chosen = await state.retention.choose(
    input.keep,
    new Set(current.map((c) => c.manifestDigest)),
    input.preloads ? new Set(input.preloads) : undefined,
  );
  const known = new Set(chosen.map((v) => v.manifestDigest));
  const unknown = current.filter((c) => !known.has(c.manifestDigest));
  if (unknown.length > 0) {
    // Installed before this home recorded what versions need: nothing can be judged safe to drop.
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `the cache cannot be pruned yet: ${unknown.length} installed folder(s) predate its records; pull or sync once, then prune`,
      { details: { reason: 'unrecorded-installs' } },
    );
  }
  const packs = await state.packs.prune(neededRanges(chosen));
  const indexes = await pruneIndexes(
    join(ctx.settings.home, 'indexes'),
    new Set([
      ...chosen.flatMap((v) => (v.indexDigest ? [v.indexDigest] : [])),
      ...current.map((c) => c.indexDigest),
    ]),
  );
  await state.retention.forgetAllBut(chosen);
  return {
    keep: input.keep,
    kept: chosen.map((v) => ({ manifestDigest: v.manifestDigest, kind: v.kind })),
    ...combine(packs, indexes),
  };
}

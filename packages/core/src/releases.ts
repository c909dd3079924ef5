import type { StoredStatement } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import type { CoreContext } from './context.js';
import { formatLocation, type Location, parseLocation } from './locations.js';
import { validateName } from './names.js';
import { type ReleaseSigning, statementSigner } from './release.js';
import { publishStatement, RELEASE_TAG, readPublishedStatement } from './release-registry.js';

/**
 * Signed release statements on the publisher's side: signing a head move or a refresh, publishing
 * statements beside the head patch, and reading them back (release.ts is the client's side).
 */

/**
 * Publishes the realm's newest statement beside its head patch (tag `release` in the head's
 * repository); returns where it went.
 */
export async function publishRelease(
  ctx: CoreContext,
  realm: string,
): Promise<{ reference: string; sequence: string }> {
  return publishStored(ctx, await releaseStatement(ctx, realm));
}

async function publishStored(
  ctx: CoreContext,
  stored: StoredStatement,
): Promise<{ reference: string; sequence: string }> {
  const head = await (await ctx.chain()).getPatch(stored.head);
  const repository = repositoryOf(head.reference);
  await publishStatement(await ctx.stores.target(repository), stored);
  return { reference: formatLocation({ ...repository, tag: RELEASE_TAG }), sequence: stored.sequence };
}

/**
 * The release statement published in the repository of `reference` (a patch reference), for a
 * launcher that takes statements from the registry instead of the API.
 */
export async function publishedRelease(ctx: CoreContext, reference: string): Promise<string> {
  return readPublishedStatement(await ctx.stores.target(repositoryOf(reference)));
}

/** The head moved and its statement is committed: publishing it is a copy that can be redone. */
export async function publishOrWarn(ctx: CoreContext, statement: StoredStatement): Promise<void> {
  try {
    await publishStored(ctx, statement);
  } catch (error) {
    ctx.warn(
      `release statement #${statement.sequence} of ${statement.realm} is signed and served by the API, but publishing it to the registry failed (${(error as Error).message})`,
      { reason: 'release-not-published', realm: statement.realm, sequence: statement.sequence },
    );
  }
}

/** Launchers that check release statements refuse a head that none names: say so before moving it. */
export async function warnOfUnsignedRelease(ctx: CoreContext, realm: string): Promise<void> {
  const latest = await (await ctx.chain()).latestStatement(realm);
  if (latest) {
    ctx.warn(
      `${realm} has signed release statements (newest #${latest.sequence}) but this head move is not signed: launchers that check releases refuse the new head until it is`,
      { reason: 'unsigned-head-move', realm, sequence: latest.sequence },
    );
  }
}

/** Re-signs the realm's unchanged head under a higher sequence and a new expiry (`release refresh`). */
export async function refreshRelease(
  ctx: CoreContext,
  input: { realm: string; release: ReleaseSigning },
): Promise<StoredStatement> {
  validateName('realm', input.realm);
  const stored = await (await ctx.chain()).refreshStatement({
    realm: input.realm,
    statement: statementSigner(input.release),
  });
  await publishOrWarn(ctx, stored);
  return stored;
}

/** The realm's newest signed release statement; RELEASE_MISSING when none was ever signed. */
export async function releaseStatement(ctx: CoreContext, realm: string): Promise<StoredStatement> {
  validateName('realm', realm);
  const statement = await (await ctx.chain()).latestStatement(realm);
  if (!statement) {
    throw new SplinterError('RELEASE_MISSING', `realm ${realm} has no signed release statement`, {
      details: { reason: 'never-signed', realm },
    });
  }
  return statement;
}

/** The repository a reference names, without its tag or digest. */
function repositoryOf(reference: string): Location {
  const { digest: _digest, tag: _tag, ...repository } = parseLocation(reference);
  return repository;
}

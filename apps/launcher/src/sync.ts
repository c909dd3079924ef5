import { join, resolve } from 'node:path';
import {
  ArtifactAnnotation,
  acceptReleaseStatement,
  type ExpectedManifest,
  fetchRealmView,
  isFolder,
  type PullTrust,
  type RealmPatch,
  type RealmView,
  type ReleaseStatement,
  type ReleaseTrust,
  readRecord,
  requestReleaseStatement,
  requestUnlock,
  type Splinter,
  type TransferStats,
  writeRecord,
} from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';

export interface SyncOptions {
  /** Launcher API base URL. */
  api: string;
  /** A launcher token of `realm`. */
  token: string;
  realm: string;
  /** The client's game folder: what the launcher installed is replaced, anything else is kept. */
  output: string;
  trust: PullTrust;
  /** Where the launcher remembers what it installed (one small JSON file per realm). */
  stateDir: string;
  concurrency?: number | undefined;
  /** Install only untagged files and those of this locale; changing it later fetches only what is missing. */
  locale?: string | undefined;
  /** Installed versions whose cached bytes are kept after each round (rollback targets); default 3. */
  keepVersions?: number | undefined;
  /** Paths never written nor removed (default PLAYER_PATHS: saves, screenshots, user, BepInEx, mods). */
  neverTouch?: readonly string[] | undefined;
  /**
   * Accept a head only with a release statement signed by these release keys: not older than the
   * newest one this launcher accepted, not expired, about this realm, naming the manifest installed.
   */
  release?: ReleaseTrust | undefined;
  /**
   * Where the statement comes from: the launcher API (default), or the registry, published beside
   * the patches (tag `release` in the head's repository), so that an API that serves an old one
   * cannot hold the launcher back. Either way nothing in it is trusted until it verifies.
   */
  releaseFrom?: 'api' | 'registry' | undefined;
  /** Stops the round (INTERRUPTED): what is staged or installed so far stays, nothing cut short does. */
  signal?: AbortSignal | undefined;
}

interface InstalledState {
  output: string;
  patchId: string;
  version: string;
  digest: string;
  locale?: string | undefined;
}

export interface SyncResult {
  realm: string;
  /** What the realm's head is now, and what happened to the folder. */
  head: { id: string; version: string; digest: string } | null;
  action: 'installed' | 'up-to-date' | 'no-head';
  /** What the install downloaded (nothing after a preload was staged, or for a rollback). */
  transfer?: TransferStats;
  /** Preloaded patches whose (encrypted) content is now in the cache. */
  staged: Array<{ id: string; version: string; digest: string; transfer: TransferStats }>;
  /** The cache after the round, pruned to the kept versions and the staged preloads (bytes on disk). */
  cache?: { before: number; after: number; keep: number } | undefined;
  /** The signed release statement the head was accepted under (with release keys only). */
  release?: { sequence: string; expiresAt: string };
}

/**
 * One launcher round for a realm: stage every preloaded patch's ciphertext in the cache, then make the
 * folder hold the realm's head (verified, decrypted with the key the API releases once the patch is
 * active, swapped in atomically). A folder already at the head is left alone; a rollback installs the
 * earlier version from the cache.
 */
export async function syncRealm(splinter: Splinter, options: SyncOptions): Promise<SyncResult> {
  const credentials = { api: options.api, token: options.token };
  let view = await revalidatedView(options);
  let statement: ReleaseStatement | undefined;
  if (options.release) {
    // Checked before anything is staged: a refused statement leaves cache and folder as they were.
    const envelope =
      options.releaseFrom === 'registry'
        ? await publishedEnvelope(splinter, view, options)
        : await requestReleaseStatement({ ...credentials, realm: options.realm });
    statement = await acceptReleaseStatement({
      envelope,
      realm: options.realm,
      trust: options.release,
      stateFile: join(options.stateDir, `${options.realm}.release.json`),
    });
    // An activation between the two requests is seen once more; a view that still disagrees is refused.
    if (view.head?.id !== statement.head.id) view = await revalidatedView(options);
    assertViewMatches(view, statement);
  }
  const staged: SyncResult['staged'] = [];
  for (const patch of view.preload) {
    const fetched = await splinter.prefetch({
      kind: 'patch',
      reference: patch.reference,
      trust: options.trust,
      concurrency: options.concurrency,
      locale: options.locale,
      signal: options.signal,
    });
    staged.push({ ...summary(patch), transfer: fetched.transfer });
  }
  if (!view.head) return { realm: options.realm, head: null, action: 'no-head', staged };

  const head = view.head;
  // The automatic limit: what the last installs and this realm's preloads need, nothing older.
  const prune = async () => {
    const keep = options.keepVersions ?? 3;
    try {
      const pruned = await splinter.pruneCache({ keep, preloads: view.preload.map((p) => p.digest) });
      return { before: pruned.before, after: pruned.after, keep };
    } catch (error) {
      // A folder installed before this home recorded what versions need: prune after its next install.
      if ((error as { details?: { reason?: string } }).details?.reason === 'unrecorded-installs')
        return undefined;
      throw error;
    }
  };
  const release = statement ? { sequence: statement.sequence, expiresAt: statement.expiresAt } : undefined;
  const expect: ExpectedManifest = statement
    ? {
        digest: statement.head.digest,
        annotations: {
          [ArtifactAnnotation.Version]: statement.head.version,
          [ArtifactAnnotation.Realm]: statement.realm,
        },
        source: `release statement #${statement.sequence}`,
      }
    : {
        annotations: {
          [ArtifactAnnotation.Version]: head.version,
          [ArtifactAnnotation.Realm]: options.realm,
        },
        source: 'launcher API',
      };
  const output = resolve(options.output);
  const stateFile = join(options.stateDir, `${options.realm}.json`);
  const installed = await readRecord<InstalledState>(stateFile);
  if (
    installed?.digest === head.digest &&
    installed.output === output &&
    installed.locale === options.locale &&
    (await isFolder(output))
  ) {
    return {
      realm: options.realm,
      head: summary(head),
      action: 'up-to-date',
      staged,
      cache: await prune(),
      ...(release ? { release } : {}),
    };
  }
  // Records reused from earlier preloads stay sealed with their keys: the newest sealed patch of the
  // chain is unlocked, and its grant carries the keys of its sealed ancestors too.
  const newestSealed = view.chain.findLast((patch) => patch.keyId);
  const keys: Uint8Array[] = [];
  if (newestSealed) {
    const grant = await requestUnlock({ ...credentials, patchId: newestSealed.id });
    keys.push(grant.key, ...grant.ancestors);
  }
  const pulled = await splinter.pull({
    kind: 'patch',
    reference: statement?.head.reference ?? head.reference,
    output,
    replace: true,
    // The game folder is shared with the player: saves, settings, screenshots and mod loaders stay.
    keepUnowned: { neverTouch: options.neverTouch },
    expect,
    trust: options.trust,
    keys,
    locale: options.locale,
    concurrency: options.concurrency,
    signal: options.signal,
  });
  await writeRecord(stateFile, {
    output,
    patchId: head.id,
    version: head.version,
    digest: pulled.digest,
    locale: options.locale,
  } satisfies InstalledState);
  return {
    realm: options.realm,
    head: summary(head),
    action: 'installed',
    transfer: pulled.transfer,
    staged,
    cache: await prune(),
    ...(release ? { release } : {}),
  };
}

/**
 * The realm view, asked with `If-None-Match` for the one kept from the last round: an unchanged realm
 * costs a 304 and no parsing. A 429 is waited out as `Retry-After` says (see Backoff).
 */
async function revalidatedView(options: SyncOptions): Promise<RealmView> {
  const file = join(options.stateDir, `${options.realm}.view.json`);
  const kept = await readRecord<{ etag?: unknown; view?: RealmView }>(file);
  const last =
    typeof kept?.etag === 'string' && kept.view?.realm === options.realm && Array.isArray(kept.view.chain)
      ? { etag: kept.etag, view: kept.view }
      : undefined;
  const answer = await fetchRealmView({ api: options.api, token: options.token, realm: options.realm, last });
  if (!answer.notModified && answer.etag !== undefined) {
    await writeRecord(file, { etag: answer.etag, view: answer.view });
  }
  return answer.view;
}

/** The statement published beside the patches, in the repository of the head the API names. */
async function publishedEnvelope(splinter: Splinter, view: RealmView, options: SyncOptions): Promise<string> {
  if (!view.head) {
    throw new SplinterError(
      'RELEASE_MISSING',
      `the launcher API names no head of ${options.realm}: no repository to read its release statement from`,
    );
  }
  return splinter.publishedRelease(view.head.reference);
}

/** The API's view must name the head the statement names: its chain is what unlocks the head's keys. */
function assertViewMatches(view: RealmView, statement: ReleaseStatement): void {
  const head = view.head;
  if (head?.id !== statement.head.id || head.digest !== statement.head.digest) {
    throw new SplinterError(
      'RELEASE_HEAD_MISMATCH',
      `the launcher API names head ${head ? `${head.id} (${head.version}, ${head.digest})` : '(none)'}, but release statement #${statement.sequence} names ${statement.head.id} (${statement.head.version}, ${statement.head.digest})`,
    );
  }
}

function summary(patch: RealmPatch): { id: string; version: string; digest: string } {
  return { id: patch.id, version: patch.version, digest: patch.digest };
}

import { join } from 'node:path';
import type {
  AccessStore,
  HeadChange,
  ModPin,
  ModTrust,
  PatchRow,
  ReleaseRow,
  ReleaseSigned,
  ShownRealm,
  StoredStatement,
} from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import {
  type CopyOptions,
  type CopyStats,
  type Descriptor,
  type ImageManifest,
  type ProgressListener,
  progressTo,
  type Target,
  throwIfAborted,
} from '@splintertree/oci';
import {
  type BaseVersion,
  FormatAnnotation,
  fileSystemError,
  platformName,
  type Selection,
  WorkJournal,
} from '@splintertree/pack';
import { keyIdOf, unwrapKey } from '@splintertree/seal';
import { requireTrustedSignature, type Signer, type TrustedKey } from '@splintertree/sign';
import { ArtifactAnnotation, ArtifactType } from './artifact.js';
import { BlobLocations } from './blob-locations.js';
import { type ChainDatabase, openChainDatabase } from './database.js';
import {
  ClientState,
  fetchManifest,
  installVersion,
  openVersion,
  prefetchVersion,
  type VersionSource,
} from './install.js';
import { journalSessions, Leftovers } from './leftovers.js';
import { destinationFor, formatLocation, type Location, parseLocation } from './locations.js';
import { validateName, validateVersion } from './names.js';
import { type PreloadKey, preparePreload, resolveKek } from './preload.js';
import type { ProgressSink } from './progress.js';
import { publishFolder } from './publish.js';
import { type ReleaseSigning, statementSigner } from './release.js';
import { publishStatement, RELEASE_TAG, readPublishedStatement } from './release-registry.js';
import { createdSeconds, NoNewContentTarget } from './repush.js';
import { combine, neededRanges, type PruneResult, pruneIndexes } from './retention.js';
import type { Settings } from './settings.js';
import { publicKeysFromPem, publicKeysToPem, signManifest } from './signing.js';
import { type RegistryAccess, Stores } from './stores.js';
import type {
  DownloadInput,
  ExpectedManifest,
  FetchResult,
  InspectResult,
  PullInput,
  PullResult,
  PushInput,
  PushResult,
  SignatureFormat,
  SignResult,
  TransferStats,
  VerifiedSignature,
  VerifyResult,
} from './types.js';

export interface OpenOptions {
  settings: Settings;
  plainHttp?: boolean;
  /** CA file, --insecure and the auth file, already merged with their environment variables. */
  registryAccess?: RegistryAccess | undefined;
  progress?: ProgressSink | undefined;
  warn?: (message: string) => void;
  /** Parallel blob transfers; 4 unless a call says otherwise. */
  concurrency?: number;
  /** The operating system installs are for (default: this one); only Linux takes unportable trees. */
  platform?: NodeJS.Platform;
}

const DEFAULT_CONCURRENCY = 4;

/** Opens the façade once what runs that are gone left under SPLINTER_HOME has been cleaned up. */
export async function openSplinter(options: OpenOptions): Promise<Splinter> {
  const splinter = new Splinter(options);
  await splinter.cleanLeftovers();
  return splinter;
}

/** The façade the apps use: every operation splinter offers, over typed settings. */
export class Splinter {
  private readonly settings: Settings;
  private readonly stores: Stores;
  private readonly blobLocations: BlobLocations;
  private readonly journal: WorkJournal;
  private readonly leftovers: Leftovers;
  private database: Promise<ChainDatabase> | undefined;

  constructor(private readonly options: OpenOptions) {
    this.settings = options.settings;
    this.blobLocations = new BlobLocations(join(this.settings.home, 'blob-locations.json'));
    this.journal = new WorkJournal(join(this.settings.home, 'journal'));
    this.stores = new Stores({
      home: this.settings.home,
      plainHttp: options.plainHttp === true,
      dockerConfigDir: this.settings.dockerConfigDir,
      registryAuthFile: this.settings.registryAuthFile,
      // Without flags (an embedding app), the environment variables alone decide.
      access: options.registryAccess ?? { caFile: this.settings.caFile, insecure: this.settings.insecure },
      proxy: this.settings.proxy,
      sessions: journalSessions(this.journal),
    });
    this.leftovers = new Leftovers(this.settings.home, this.journal, (registry, repository, options) =>
      this.stores.registryTarget(registry, repository, options),
    );
  }

  /**
   * Removes what killed runs left (work folders, temporaries, staging folders, old trees set aside)
   * and cancels their registry upload sessions. openSplinter runs it before any command.
   */
  cleanLeftovers(): Promise<number> {
    return this.leftovers.clean();
  }

  /**
   * Ctrl-C: refuses new work, removes this run's own work folders, staging folders and temporaries,
   * puts back an old tree set aside, and cancels its upload sessions. The caller exits right after.
   */
  interrupt(): Promise<void> {
    return this.leftovers.interrupt();
  }

  /** The release database, opened and migrated on first use. */
  private chain() {
    this.database ??= openChainDatabase(this.settings);
    return this.database.then((db) => db.chain);
  }

  /** Preload keys and launcher tokens (see preload.ts). */
  async access(): Promise<AccessStore> {
    this.database ??= openChainDatabase(this.settings);
    return (await this.database).access;
  }

  async push(input: PushInput): Promise<PushResult> {
    const concurrency = input.concurrency ?? this.options.concurrency ?? DEFAULT_CONCURRENCY;
    const version = validateVersion(input.version);
    const isPatch = input.kind === 'patch';
    const leaf = isPatch
      ? validateName('realm', required(input.realm, '--realm'))
      : validateName('mod name', required(input.name, '--name'));
    const registryBase =
      input.registry ?? (isPatch ? this.settings.patchRegistry : this.settings.modRegistry);
    const destination = destinationFor(registryBase, isPatch ? 'patches' : 'mods', leaf, version);
    if (!isPatch && (input.preload || input.parent !== undefined || (input.mods?.length ?? 0) > 0)) {
      throw new SplinterError('INVALID_ARGUMENT', '--preload, --parent and --mod apply to patches only');
    }

    // Patches are checked against the chain before anything is uploaded: a refused push moves no bytes.
    const chain = isPatch ? await this.chain() : undefined;
    // The version exists: the push may only be the same one again (a re-run CI job), which is checked
    // by building it against itself and refusing any blob the registry does not already hold.
    const existing = chain ? await chain.findVersion(leaf, version) : undefined;
    const otherContent = (why: string) =>
      new SplinterError('PATCH_EXISTS', `realm ${leaf} already has a patch version ${version} ${why}`, {
        details: { id: existing?.id, digest: existing?.digest },
      });
    if (existing && input.preload) {
      throw otherContent('(a preload is sealed under a new key, so it is never pushed twice)');
    }
    const asked = chain && input.parent !== undefined ? await chain.findPatch(input.parent, leaf) : undefined;
    if (existing && asked && asked.id !== existing.parent)
      throw otherContent(`with parent ${existing.parent}`);
    const parent = existing ? undefined : asked;
    const mods = await Promise.all((input.mods ?? []).map((reference) => this.pinMod(reference)));
    if (mods.length > 0) await this.requireTrustedMods(leaf, mods, input.modTrust);
    const preload: PreloadKey | undefined = input.preload
      ? await preparePreload(this.settings, await this.access())
      : undefined;

    const target = await this.stores.target(destination);
    // A re-push builds the manifest the first push built: its time, and a parent only if it named one.
    const existingAnnotations = existing
      ? ((await fetchManifest(target, await target.resolve(existing.digest))).annotations ?? {})
      : undefined;
    const parentVersion = existingAnnotations
      ? existingAnnotations[ArtifactAnnotation.Parent]
      : parent?.version;
    const annotations: Record<string, string> = { [ArtifactAnnotation.Version]: version };
    if (isPatch) {
      annotations[ArtifactAnnotation.Realm] = leaf;
      if (parentVersion !== undefined) annotations[ArtifactAnnotation.Parent] = parentVersion;
      if (mods.length > 0) annotations[ArtifactAnnotation.Mods] = JSON.stringify(mods);
    } else {
      annotations[ArtifactAnnotation.ModName] = leaf;
    }

    const createdAt = existingAnnotations
      ? createdSeconds(existingAnnotations)
      : this.settings.sourceDateEpoch;
    // Chunks are reused from the parent, else the head, else the realm's newest patch (a draft, say).
    const baseRow =
      existing ?? parent ?? (chain && input.parent === undefined ? await this.dedupBase(chain, leaf) : null);
    const base = await this.baseVersion(
      target,
      baseRow?.reference ?? input.base,
      baseRow?.chain ?? [],
      concurrency,
    );
    const { manifest, stats, chunks } = await this.transfer(
      `push ${leaf}`,
      destination,
      'destination',
      input.signal,
      (copy) =>
        publishFolder({
          kind: input.kind,
          dir: input.dir,
          tmpRoot: join(this.settings.home, 'tmp'),
          annotations,
          createdAt,
          patchKey: preload?.key,
          base,
          tagRules: input.tagRules,
          portable: input.allowUnportable !== true,
          dereference: input.dereference,
          concurrency,
          threads: this.settings.chunkThreads,
          destination: existing
            ? new NoNewContentTarget(target, (blob) =>
                otherContent(
                  `with other content (${blob ? `its ${blob.mediaType} differs` : 'tags differ'})`,
                ),
              )
            : target,
          copy,
        }),
    );
    const manifestDescriptor = manifest.descriptor;
    await this.recordBlobLocations(destination, manifest.manifest);
    // Stopped meanwhile: the version is neither tagged nor registered.
    throwIfAborted(input.signal);
    await target.tag(manifestDescriptor, version);
    const signatures = input.signer
      ? await signManifest(
          target,
          manifestDescriptor,
          input.signer,
          input.signatureFormat ?? 'both',
          destination,
        )
      : [];
    const result: PushResult = {
      kind: input.kind,
      digest: manifestDescriptor.digest,
      reference: formatLocation(destination),
      transfer: transferStats(stats),
      chunks,
      signatures,
    };
    if (existing) {
      result.id = existing.id;
      result.status = existing.status;
      result.parent = existing.parent;
      result.alreadyPushed = true;
    } else if (chain) {
      const pinned: Location = { ...destination, digest: manifestDescriptor.digest };
      delete pinned.tag;
      const row = await chain.registerPatch({
        realm: leaf,
        version,
        parent: parent?.id,
        reference: formatLocation(pinned),
        digest: manifestDescriptor.digest,
        status: preload ? 'preload' : 'draft',
        mods,
        key: preload?.stored,
      });
      if (preload) result.keyId = preload.keyId;
      result.id = row.id;
      result.status = row.status;
      result.parent = row.parent;
      if (input.parent === undefined) await this.warnOfNewerDrafts(chain, row);
    }
    return result;
  }

  async pull(input: PullInput): Promise<PullResult> {
    const { outcome, fetched } = await this.download(input, 'pull', async (source) => {
      const installed = await installVersion({
        ...source,
        output: input.output,
        replace: input.replace === true,
        keepUnowned: input.keepUnowned,
        platform: this.options.platform,
      });
      return { outcome: installed, stats: installed.fetch };
    });
    return {
      ...fetched,
      output: input.output,
      files: outcome.files,
      bytes: outcome.bytes,
      kept: outcome.kept,
    };
  }

  /**
   * Downloads what installing an artifact will need into the local cache without installing it
   * (launchers stage preloads early this way): the same signature check as a pull comes first, and a
   * later pull or rollback to it downloads nothing (or, for a preload whose key is not released yet,
   * only records of packs the cache already held in part).
   */
  async prefetch(input: DownloadInput): Promise<FetchResult> {
    const { fetched } = await this.download(input, 'fetch', async (source) => {
      const stats = await prefetchVersion(source);
      return { outcome: stats, stats };
    });
    return fetched;
  }

  /**
   * What pull and fetch share: signatures checked before anything of the artifact beyond its manifest
   * digest is read, the manifest's kind checked, then `run` over the client's cache, with downloaded
   * bytes counted and drawn on the progress bar.
   */
  private async download<T>(
    input: DownloadInput,
    verb: 'pull' | 'fetch',
    run: (
      source: VersionSource & { manifestDigest: string; selection: Selection },
    ) => Promise<{ outcome: T; stats: TransferStats }>,
  ): Promise<{ outcome: T; fetched: FetchResult }> {
    throwIfAborted(input.signal);
    const { location, target, descriptor } = await this.locate(input.reference);
    const verifiedBy = await this.requireTrust(target, location, descriptor, input.trust);
    const manifest = await fetchManifest(target, descriptor);
    assertArtifactKind(manifest, input.kind, input.reference);
    assertPortableHere(manifest, input.reference, this.options.platform ?? process.platform);
    if (input.expect) assertExpected(manifest, descriptor.digest, input.expect, input.reference);
    const counter = this.byteCounter(`${verb} ${location.repository}`);
    try {
      // A full or refusing disk (cache or output) is one line with its own code, never INTERNAL.
      const { outcome, stats } = await run({
        manifest,
        manifestDigest: descriptor.digest,
        remote: target,
        state: await this.clientState(),
        keys: keyRing(input.keys ?? []),
        concurrency: input.concurrency ?? this.options.concurrency ?? DEFAULT_CONCURRENCY,
        onProgress: counter.listener,
        signal: input.signal,
        selection: { locale: input.locale, platform: input.platform },
      });
      await this.recordBlobLocations(location, manifest);
      return {
        outcome,
        fetched: {
          kind: input.kind,
          digest: descriptor.digest,
          reference: formatLocation({ ...location, digest: descriptor.digest }),
          // Index records included: every pack byte the run downloaded.
          transfer: { ...stats, bytes: counter.total() },
          verifiedBy,
          verificationSkipped: !('keys' in input.trust),
        },
      };
    } catch (error) {
      throw fileSystemError(error);
    } finally {
      counter.end();
    }
  }

  /** Signs an artifact that is already stored (`splinter sign`). */
  async sign(input: { reference: string; signer: Signer; format?: SignatureFormat }): Promise<SignResult> {
    const { location, target, descriptor } = await this.locate(input.reference);
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
  async verify(input: { reference: string; keys: TrustedKey[] }): Promise<VerifyResult> {
    const { location, target, descriptor } = await this.locate(input.reference);
    const report = await requireTrustedSignature(target, descriptor, input.keys);
    return {
      digest: descriptor.digest,
      reference: formatLocation({ ...location, digest: descriptor.digest }),
      ...report,
    };
  }

  async inspect(reference: string): Promise<InspectResult> {
    const { location, target, descriptor } = await this.locate(reference);
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

  // ---- release management (cluster.patches) ----

  /** Activates a patch (an id, or a version with `realm`) with a compare-and-set on the head read first. */
  async activate(input: {
    patch: string;
    realm?: string | undefined;
    force: boolean;
    actor: string;
    /** Keys the patch's mods must be signed by; unset means the realm's stored mod trust. */
    modTrust?: TrustedKey[] | undefined;
    /** Sign a release statement with this release key in the activation's transaction. */
    release?: ReleaseSigning | undefined;
  }): Promise<ReleaseRow & { statement?: StoredStatement }> {
    const chain = await this.chain();
    const patch = await chain.findPatch(input.patch, input.realm);
    // Checked again here, not only at push: the policy or the signatures may have changed since, and
    // this is the last step before the mods go live (--force does not skip it).
    if (patch.mods.length > 0) await this.requireTrustedMods(patch.realm, patch.mods, input.modTrust);
    const seen = (await chain.showRealm(patch.realm, { ancestors: 0 })).head?.id ?? null;
    if (!input.release) await this.warnOfUnsignedRelease(patch.realm);
    const moved = await chain.activate({
      patchId: patch.id,
      realm: input.realm,
      expectedHead: seen,
      actor: input.actor,
      force: input.force,
      statement: input.release ? statementSigner(input.release) : undefined,
    });
    if (moved.statement) await this.publishOrWarn(moved.statement);
    return moved;
  }

  async rollback(input: {
    realm: string;
    to?: string | undefined;
    actor: string;
    /** Keys the target's mods must be signed by; unset means the realm's stored mod trust. */
    modTrust?: TrustedKey[] | undefined;
    /** Sign a release statement with this release key in the rollback's transaction. */
    release?: ReleaseSigning | undefined;
  }): Promise<ReleaseRow & { statement?: StoredStatement }> {
    const chain = await this.chain();
    const to = input.to === undefined ? undefined : (await chain.findPatch(input.to, input.realm)).id;
    // The patch the head moves back to goes live again: its mods are checked as at activation, against
    // the policy of now (a key retired since is no longer trusted). The head read here is compared and
    // set, so the patch checked is the patch made head.
    const head = (await chain.showRealm(input.realm, { ancestors: 0 })).head;
    const target = to ?? head?.parent ?? undefined;
    if (target !== undefined) {
      const patch = await chain.getPatch(target); // an id: a version may look like one
      if (patch.mods.length > 0) await this.requireTrustedMods(input.realm, patch.mods, input.modTrust);
    }
    if (!input.release) await this.warnOfUnsignedRelease(input.realm);
    const moved = await chain.rollback({
      realm: input.realm,
      toId: target,
      expectedHead: head?.id ?? null,
      actor: input.actor,
      statement: input.release ? statementSigner(input.release) : undefined,
    });
    if (moved.statement) await this.publishOrWarn(moved.statement);
    return moved;
  }

  /**
   * Publishes the realm's newest statement beside its head patch (tag `release` in the head's
   * repository); returns where it went.
   */
  async publishRelease(realm: string): Promise<{ reference: string; sequence: string }> {
    return this.publishStored(await this.releaseStatement(realm));
  }

  private async publishStored(stored: StoredStatement): Promise<{ reference: string; sequence: string }> {
    const head = await (await this.chain()).getPatch(stored.head);
    const repository = repositoryOf(head.reference);
    await publishStatement(await this.stores.target(repository), stored);
    return { reference: formatLocation({ ...repository, tag: RELEASE_TAG }), sequence: stored.sequence };
  }

  /**
   * The release statement published in the repository of `reference` (a patch reference), for a
   * launcher that takes statements from the registry instead of the API.
   */
  async publishedRelease(reference: string): Promise<string> {
    return readPublishedStatement(await this.stores.target(repositoryOf(reference)));
  }

  /** The head moved and its statement is committed: publishing it is a copy that can be redone. */
  private async publishOrWarn(statement: StoredStatement): Promise<void> {
    try {
      await this.publishStored(statement);
    } catch (error) {
      this.options.warn?.(
        `release statement #${statement.sequence} of ${statement.realm} is signed and served by the API, but publishing it to the registry failed (${(error as Error).message}); run release publish --realm ${statement.realm}`,
      );
    }
  }

  /** Launchers that check release statements refuse a head that none names: say so before moving it. */
  private async warnOfUnsignedRelease(realm: string): Promise<void> {
    const latest = await (await this.chain()).latestStatement(realm);
    if (latest) {
      this.options.warn?.(
        `${realm} has signed release statements (newest #${latest.sequence}) but this head move is not signed: launchers that check releases refuse the new head until it is (pass --release-key or run release refresh)`,
      );
    }
  }

  /** Re-signs the realm's unchanged head under a higher sequence and a new expiry (`release refresh`). */
  async refreshRelease(input: { realm: string; release: ReleaseSigning }): Promise<StoredStatement> {
    validateName('realm', input.realm);
    const stored = await (await this.chain()).refreshStatement({
      realm: input.realm,
      statement: statementSigner(input.release),
    });
    await this.publishOrWarn(stored);
    return stored;
  }

  /** The realm's newest signed release statement; RELEASE_MISSING when none was ever signed. */
  async releaseStatement(realm: string): Promise<StoredStatement> {
    validateName('realm', realm);
    const statement = await (await this.chain()).latestStatement(realm);
    if (!statement) {
      throw new SplinterError(
        'RELEASE_MISSING',
        `realm ${realm} has no signed release statement (activate with --release-key, or run release refresh)`,
      );
    }
    return statement;
  }

  async listPatches(realm: string): Promise<PatchRow[]> {
    return (await this.chain()).listPatches(realm);
  }

  async history(realm: string): Promise<ReleaseRow[]> {
    return (await this.chain()).history(realm);
  }

  /** The realm's head, its nearest ancestors and how many older ones were left out, with the head's mods. */
  async showRealm(realm: string): Promise<ShownRealm & { mods: ModPin[] }> {
    const shown = await (await this.chain()).showRealm(realm);
    return { ...shown, mods: shown.head?.mods ?? [] };
  }

  /**
   * Calls `onChange` after every activation or rollback that commits (PostgreSQL NOTIFY; with the
   * embedded PGlite database only changes made by this process are heard). Returns the unsubscribe.
   */
  /** Calls `onSigned` after every release statement that commits (a refresh too, which moves no head). */
  async watchReleaseStatements(
    onSigned: (signed: ReleaseSigned) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>> {
    return (await this.chain()).listenReleaseStatements(onSigned, onError);
  }

  async watchHeadChanges(
    onChange: (change: HeadChange) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>> {
    return (await this.chain()).listenHeadChanges(onChange, onError);
  }

  async revoke(patch: string, realm?: string): Promise<PatchRow> {
    const chain = await this.chain();
    return chain.revokePatch((await chain.findPatch(patch, realm)).id);
  }

  async close(): Promise<void> {
    await this.stores.close();
    if (this.database) await (await this.database).client.close();
  }

  private state: Promise<ClientState> | undefined;

  /**
   * Shrinks the client cache to what the versions worth keeping need: every version a folder holds now,
   * the `keep` newest installed ones (what a rollback to them reads) and staged preloads (`preloads`, by
   * manifest digest, when the caller knows them). Packs nothing needs are deleted, others rewritten to
   * their needed ranges; decoded indexes no kept version uses are deleted.
   */
  async pruneCache(input: { keep: number; preloads?: string[] | undefined }): Promise<PruneResult> {
    if (!Number.isSafeInteger(input.keep) || input.keep < 1) {
      throw new SplinterError('INVALID_ARGUMENT', `--keep must be a whole number >= 1, not ${input.keep}`);
    }
    const state = await this.clientState();
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
      join(this.settings.home, 'indexes'),
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

  /** The realm's head, else its newest patch that is not revoked; null for a new realm. */
  /** A push without --parent builds on the head; say so when drafts newer than the head exist. */
  private async warnOfNewerDrafts(
    chain: Awaited<ReturnType<Splinter['chain']>>,
    pushed: PatchRow,
  ): Promise<void> {
    const drafts = (await chain.listPatches(pushed.realm)).filter(
      (p) => p.status === 'draft' && p.id !== pushed.id && BigInt(p.id) > BigInt(pushed.parent ?? '0'),
    );
    if (drafts.length === 0) return;
    this.options.warn?.(
      `${pushed.realm} has drafts newer than its head (${drafts.map((p) => p.version).join(', ')}): ` +
        `${pushed.version} builds on ${pushed.parent === null ? 'nothing' : `the head (patch ${pushed.parent})`}; pass --parent to build on a draft`,
    );
  }

  private async dedupBase(
    chain: Awaited<ReturnType<Splinter['chain']>>,
    realm: string,
  ): Promise<PatchRow | null> {
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

  /** The client's cache (packs, indexes, install records). */
  private clientState(): Promise<ClientState> {
    this.state ??= (async () => {
      return new ClientState(this.settings.home, await this.stores.embeddedLayout(), this.journal);
    })();
    return this.state;
  }

  /**
   * The version a push builds on (the parent patch, or a mod's --base), read from the same repository:
   * its chunks are reused without asking the registry. A base in another repository, or a preload whose
   * keys this publisher cannot unwrap, is skipped with a warning: the push then uploads everything.
   */
  private async baseVersion(
    target: Target,
    reference: string | undefined,
    chainIds: string[],
    concurrency: number,
  ): Promise<BaseVersion | undefined> {
    if (reference === undefined) return undefined;
    const { target: baseTarget, descriptor } = await this.locate(reference);
    if (baseTarget.location !== target.location) {
      this.options.warn?.(`the base ${reference} is in another repository: its chunks are uploaded again`);
      return undefined;
    }
    const manifest = await fetchManifest(baseTarget, descriptor);
    try {
      return await openVersion({
        manifest,
        remote: baseTarget,
        state: await this.clientState(),
        keys: await this.publisherKeys(chainIds),
        concurrency,
      });
    } catch (error) {
      if ((error as { code?: string }).code !== 'KEY_REQUIRED') throw error;
      this.options.warn?.(
        `the base ${reference} is sealed and its key cannot be unwrapped here: nothing is reused`,
      );
      return undefined;
    }
  }

  /** The patch keys of a chain, unwrapped with the KEK when this process has it. */
  private async publisherKeys(chainIds: string[]): Promise<Map<string, Uint8Array>> {
    const keys = new Map<string, Uint8Array>();
    if (chainIds.length === 0) return keys;
    const kek = await resolveKek(this.settings, 'reading a sealed base').catch(() => undefined);
    if (!kek) return keys;
    const access = await this.access();
    for (const id of chainIds) {
      const state = await access.unlockState(id);
      if (state?.key?.wrappedKey)
        keys.set(state.key.keyId, unwrapKey(kek, state.key.wrappedKey, state.key.keyId));
    }
    return keys;
  }

  /** Counts downloaded bytes and draws the download's events on the progress bar. */
  private byteCounter(label: string): { listener: ProgressListener; total: () => number; end: () => void } {
    const progress = this.options.progress;
    const draw = progressTo(progress);
    progress?.begin(label, 0);
    let total = 0;
    return {
      listener: (event) => {
        if (event.type === 'bytes') total += event.bytes;
        draw?.(event);
      },
      total: () => total,
      end: () => progress?.end(),
    };
  }

  /** A reference's location, the target that holds it, and the manifest descriptor it resolves to. */
  private async locate(
    reference: string,
  ): Promise<{ location: Location; target: Target; descriptor: Descriptor }> {
    const location = parseLocation(reference);
    const target = await this.stores.target(location);
    const descriptor = await target.resolve(location.digest ?? location.tag ?? 'latest');
    return { location, target, descriptor };
  }

  /** Remembers which registry repository holds these blobs, so later pushes can mount them from there. */
  private async recordBlobLocations(location: Location, manifest: ImageManifest): Promise<void> {
    if (location.kind !== 'registry') return;
    await this.blobLocations.record(location.registry, location.repository, [
      manifest.config,
      ...manifest.layers,
    ]);
  }

  /** The signatures that verify under the trusted keys, or a warning when verification is skipped. */
  private async requireTrust(
    target: Target,
    location: Location,
    descriptor: Descriptor,
    trust: PullInput['trust'],
  ): Promise<VerifiedSignature[]> {
    if ('keys' in trust) return (await requireTrustedSignature(target, descriptor, trust.keys)).verified;
    this.options.warn?.(
      `reading ${formatLocation({ ...location, digest: descriptor.digest })} without verifying any signature (--insecure-skip-verify)`,
    );
    return [];
  }

  // ---- mod trust (cluster.realm_mod_trust) ----

  /** Stores the keys the realm trusts to sign its patches' mods, replacing any earlier set. */
  async setModTrust(realm: string, keys: TrustedKey[], actor: string): Promise<ModTrustView> {
    if (keys.length === 0)
      throw new SplinterError('TRUST_REQUIRED', 'a mod trust policy needs at least one key');
    const stored = await (await this.chain()).setModTrust(
      validateName('realm', realm),
      publicKeysToPem(keys),
      actor,
    );
    return modTrustView(stored);
  }

  async modTrust(realm: string): Promise<ModTrustView | null> {
    const stored = await (await this.chain()).modTrust(realm);
    return stored ? modTrustView(stored) : null;
  }

  async clearModTrust(realm: string): Promise<boolean> {
    return (await this.chain()).clearModTrust(realm);
  }

  /**
   * Every mod must carry a signature by a key the realm trusts (the keys given, else the stored policy),
   * or nothing happens: MOD_UNTRUSTED names the mod and why, the underlying code in its details.
   */
  private async requireTrustedMods(
    realm: string,
    mods: ModPin[],
    given: TrustedKey[] | undefined,
  ): Promise<void> {
    let keys = given && given.length > 0 ? given : undefined;
    if (!keys) {
      const stored = await (await this.chain()).modTrust(realm).catch((error: unknown) => {
        if ((error as { code?: string }).code === 'REALM_UNKNOWN') return null;
        throw error;
      });
      if (!stored) {
        throw new SplinterError(
          'MOD_UNTRUSTED',
          `realm ${realm} trusts no mod keys: set them with splinter realm trust set --realm ${realm} --key PUB, or pass --mod-key PUB`,
          { details: { realm, mods: mods.map((m) => m.reference) } },
        );
      }
      keys = publicKeysFromPem(stored.keys, `realm ${realm} mod trust`);
    }
    for (const mod of mods) {
      try {
        const { target, descriptor } = await this.locate(mod.reference);
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

  private async pinMod(reference: string): Promise<ModPin> {
    const { location, target, descriptor } = await this.locate(reference);
    const manifest = await fetchManifest(target, descriptor);
    assertArtifactKind(manifest, 'mod', `--mod ${reference}`);
    const pinned: Location = { ...location, digest: descriptor.digest };
    delete pinned.tag;
    return { reference: formatLocation(pinned), digest: descriptor.digest };
  }

  /**
   * Runs one copy into or out of a store with the progress bar drawn from its events; a registry
   * destination is offered the repositories known to hold each blob, to mount from.
   */
  private async transfer<T>(
    label: string,
    remote: Location,
    side: 'source' | 'destination',
    signal: AbortSignal | undefined,
    run: (copy: Omit<CopyOptions, 'concurrency'>) => Promise<T>,
  ): Promise<T> {
    const progress = this.options.progress;
    const mountFrom =
      remote.kind === 'registry' && side === 'destination'
        ? await this.blobLocations.candidates(remote.registry)
        : undefined;
    progress?.begin(label, 0);
    try {
      return await run({
        ...(mountFrom ? { mountFrom } : {}),
        onProgress: progressTo(progress),
        signal,
      });
    } finally {
      progress?.end();
    }
  }
}

/** A realm's mod trust as commands show it: the keys by id, never the PEM again. */
export interface ModTrustView {
  realm: string;
  keys: { keyId: string }[];
  setBy: string;
  setAt: string;
}

function modTrustView(stored: ModTrust): ModTrustView {
  return {
    realm: stored.realm,
    keys: publicKeysFromPem(stored.keys, stored.realm).map((key) => ({ keyId: key.keyId })),
    setBy: stored.setBy,
    setAt: stored.setAt,
  };
}

/** A copy's stats without its manifest count: what push and pull both report. */
function transferStats({ manifests: _manifests, ...stats }: CopyStats): TransferStats {
  return stats;
}

function assertArtifactKind(manifest: ImageManifest, kind: PullInput['kind'], reference: string): void {
  const expected = kind === 'patch' ? ArtifactType.Patch : ArtifactType.Mod;
  if (manifest.artifactType !== expected) {
    throw new SplinterError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${reference} is ${manifest.artifactType ?? 'not an artifact'}, not a ${kind} (${expected})`,
    );
  }
}

/** A version pushed with --allow-unportable is for Linux: refused elsewhere before any layer is read. */
function assertPortableHere(manifest: ImageManifest, reference: string, platform: NodeJS.Platform): void {
  if (manifest.annotations?.[FormatAnnotation.Portable] !== 'false' || platform === 'linux') return;
  throw new SplinterError(
    'UNPORTABLE_PATH',
    `${reference} was pushed with --allow-unportable: its paths are for Linux file systems and cannot all exist on ${platformName(platform)}; nothing was downloaded`,
    { details: { platform } },
  );
}

function assertExpected(
  manifest: ImageManifest,
  digest: string,
  expected: ExpectedManifest,
  reference: string,
): void {
  if (expected.digest !== undefined && expected.digest !== digest) {
    throw new SplinterError(
      'RELEASE_HEAD_MISMATCH',
      `${reference} is ${digest}, but the ${expected.source} names ${expected.digest}`,
    );
  }
  for (const [name, value] of Object.entries(expected.annotations ?? {})) {
    const found = manifest.annotations?.[name];
    if (found !== value) {
      throw new SplinterError(
        'RELEASE_HEAD_MISMATCH',
        `${reference} says ${name}=${JSON.stringify(found ?? null)}, but the ${expected.source} names ${JSON.stringify(value)}`,
      );
    }
  }
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined) throw new SplinterError('INVALID_ARGUMENT', `${flag} is required`);
  return value;
}

/** Patch keys by their ids. */
function keyRing(keys: Uint8Array[]): Map<string, Uint8Array> {
  return new Map(keys.map((key) => [keyIdOf(key), key]));
}

/** The repository a reference names, without its tag or digest. */
function repositoryOf(reference: string): Location {
  const { digest: _digest, tag: _tag, ...repository } = parseLocation(reference);
  return repository;
}

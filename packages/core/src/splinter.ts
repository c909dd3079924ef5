import type {
  AccessStore,
  HeadChange,
  ModPin,
  PatchRow,
  ReleaseRow,
  ReleaseSigned,
  ShownRealm,
  StoredStatement,
} from '@splintertree/chain';
import type { Signer, TrustedKey } from '@splintertree/sign';
import { pruneCache } from './cache.js';
import { CoreContext, type OpenOptions } from './context.js';
import { prefetch, pull } from './fetch.js';
import { type ActivateInput, activate, type HeadMove, type RollbackInput, rollback } from './head-moves.js';
import { Leftovers } from './leftovers.js';
import { clearModTrust, type ModTrustView, modTrust, setModTrust } from './mod-trust.js';
import { push } from './push.js';
import type { ReleaseSigning } from './release.js';
import { publishedRelease, publishRelease, refreshRelease, releaseStatement } from './releases.js';
import type { PruneResult } from './retention.js';
import { inspect, sign, verify } from './stored.js';
import type {
  DownloadInput,
  FetchResult,
  InspectResult,
  PullInput,
  PullResult,
  PushInput,
  PushResult,
  SignatureFormat,
  SignResult,
  VerifyResult,
} from './types.js';

export type { OpenOptions } from './context.js';
export type { ModTrustView } from './mod-trust.js';

/** Opens the façade once what runs that are gone left under SPLINTER_HOME has been cleaned up. */
export async function openSplinter(options: OpenOptions): Promise<Splinter> {
  const splinter = new Splinter(options);
  await splinter.cleanLeftovers();
  return splinter;
}

/**
 * The façade the apps use: every operation splinter offers, over typed settings. Each method hands
 * the shared context to the module that does that one job (push.ts, fetch.ts, head-moves.ts,
 * releases.ts, mod-trust.ts, cache.ts, stored.ts).
 */
export class Splinter {
  private readonly ctx: CoreContext;
  private readonly leftovers: Leftovers;

  constructor(options: OpenOptions) {
    this.ctx = new CoreContext(options);
    const { settings, journal, stores } = this.ctx;
    this.leftovers = new Leftovers(settings.home, journal, (registry, repository, options) =>
      stores.registryTarget(registry, repository, options),
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

  /** Preload keys and launcher tokens (see preload.ts). */
  access(): Promise<AccessStore> {
    return this.ctx.access();
  }

  push(input: PushInput): Promise<PushResult> {
    return push(this.ctx, input);
  }

  pull(input: PullInput): Promise<PullResult> {
    return pull(this.ctx, input);
  }

  /**
   * Downloads what installing an artifact will need into the local cache without installing it
   * (launchers stage preloads early this way); a later pull or rollback to it downloads nothing.
   */
  prefetch(input: DownloadInput): Promise<FetchResult> {
    return prefetch(this.ctx, input);
  }

  /** Signs an artifact that is already stored (`splinter sign`). */
  sign(input: { reference: string; signer: Signer; format?: SignatureFormat }): Promise<SignResult> {
    return sign(this.ctx, input);
  }

  /**
   * Reports which signatures of an artifact verify under `keys` (`splinter verify`). Throws as a pull
   * would (SIGNATURE_MISSING / _UNTRUSTED / _INVALID) unless at least one does.
   */
  verify(input: { reference: string; keys: TrustedKey[] }): Promise<VerifyResult> {
    return verify(this.ctx, input);
  }

  inspect(reference: string): Promise<InspectResult> {
    return inspect(this.ctx, reference);
  }

  // ---- release management (cluster.patches) ----

  /** Activates a patch (an id, or a version with `realm`) with a compare-and-set on the head read first. */
  activate(input: ActivateInput): Promise<HeadMove> {
    return activate(this.ctx, input);
  }

  rollback(input: RollbackInput): Promise<HeadMove> {
    return rollback(this.ctx, input);
  }

  /**
   * Publishes the realm's newest statement beside its head patch (tag `release` in the head's
   * repository); returns where it went.
   */
  publishRelease(realm: string): Promise<{ reference: string; sequence: string }> {
    return publishRelease(this.ctx, realm);
  }

  /**
   * The release statement published in the repository of `reference` (a patch reference), for a
   * launcher that takes statements from the registry instead of the API.
   */
  publishedRelease(reference: string): Promise<string> {
    return publishedRelease(this.ctx, reference);
  }

  /** Re-signs the realm's unchanged head under a higher sequence and a new expiry (`release refresh`). */
  refreshRelease(input: { realm: string; release: ReleaseSigning }): Promise<StoredStatement> {
    return refreshRelease(this.ctx, input);
  }

  /** The realm's newest signed release statement; RELEASE_MISSING when none was ever signed. */
  releaseStatement(realm: string): Promise<StoredStatement> {
    return releaseStatement(this.ctx, realm);
  }

  async listPatches(realm: string): Promise<PatchRow[]> {
    return (await this.ctx.chain()).listPatches(realm);
  }

  async history(realm: string): Promise<ReleaseRow[]> {
    return (await this.ctx.chain()).history(realm);
  }

  /** The realm's head, its nearest ancestors and how many older ones were left out, with the head's mods. */
  async showRealm(realm: string): Promise<ShownRealm & { mods: ModPin[] }> {
    const shown = await (await this.ctx.chain()).showRealm(realm);
    return { ...shown, mods: shown.head?.mods ?? [] };
  }

  /** Calls `onSigned` after every release statement that commits (a refresh too, which moves no head). */
  async watchReleaseStatements(
    onSigned: (signed: ReleaseSigned) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>> {
    return (await this.ctx.chain()).listenReleaseStatements(onSigned, onError);
  }

  /**
   * Calls `onChange` after every activation or rollback that commits (PostgreSQL NOTIFY; with the
   * embedded PGlite database only changes made by this process are heard). Returns the unsubscribe.
   */
  async watchHeadChanges(
    onChange: (change: HeadChange) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>> {
    return (await this.ctx.chain()).listenHeadChanges(onChange, onError);
  }

  async revoke(patch: string, realm?: string): Promise<PatchRow> {
    const chain = await this.ctx.chain();
    return chain.revokePatch((await chain.findPatch(patch, realm)).id);
  }

  close(): Promise<void> {
    return this.ctx.close();
  }

  /**
   * Shrinks the client cache to what the versions worth keeping need: every version a folder holds now,
   * the `keep` newest installed ones and staged preloads (`preloads`, by manifest digest).
   */
  pruneCache(input: { keep: number; preloads?: string[] | undefined }): Promise<PruneResult> {
    return pruneCache(this.ctx, input);
  }

  // ---- mod trust (cluster.realm_mod_trust) ----

  /** Stores the keys the realm trusts to sign its patches' mods, replacing any earlier set. */
  setModTrust(realm: string, keys: TrustedKey[], actor: string): Promise<ModTrustView> {
    return setModTrust(this.ctx, realm, keys, actor);
  }

  modTrust(realm: string): Promise<ModTrustView | null> {
    return modTrust(this.ctx, realm);
  }

  clearModTrust(realm: string): Promise<boolean> {
    return clearModTrust(this.ctx, realm);
  }
}

import { join } from 'node:path';
import type { AccessStore, HeadChange, ModPin, PatchRow, ReleaseRow } from '@splinter/chain';
import { SplinterError } from '@splinter/errors';
import {
  type CopyOptions,
  type CopyStats,
  copyGraph,
  type Descriptor,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  parseManifest,
  readAllLimited,
  type Target,
} from '@splinter/oci';
import { requireTrustedSignature, type Signer, type TrustedKey } from '@splinter/sign';
import { ArtifactAnnotation, ArtifactType } from './artifact.js';
import { BlobLocations } from './blob-locations.js';
import { type ChainDatabase, openChainDatabase } from './database.js';
import { destinationFor, formatLocation, type Location, parseLocation } from './locations.js';
import { validateName, validateVersion } from './names.js';
import { type PreloadKey, preparePreload } from './preload.js';
import type { ProgressSink } from './progress.js';
import { unpackArtifact } from './pull.js';
import { pushFolder } from './push.js';
import type { Settings } from './settings.js';
import { signManifest } from './signing.js';
import { Stores } from './stores.js';
import type {
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
  progress?: ProgressSink | undefined;
  warn?: (message: string) => void;
  /** Parallel blob transfers; 4 unless a call says otherwise. */
  concurrency?: number;
}

const DEFAULT_CONCURRENCY = 4;

export async function openSplinter(options: OpenOptions): Promise<Splinter> {
  return new Splinter(options);
}

/** The façade the apps use: every operation splinter offers, over typed settings. */
export class Splinter {
  private readonly settings: Settings;
  private readonly stores: Stores;
  private readonly blobLocations: BlobLocations;
  private database: Promise<ChainDatabase> | undefined;

  constructor(private readonly options: OpenOptions) {
    this.settings = options.settings;
    this.blobLocations = new BlobLocations(join(this.settings.home, 'blob-locations.json'));
    this.stores = new Stores({
      home: this.settings.home,
      plainHttp: options.plainHttp === true,
      dockerConfigDir: this.settings.dockerConfigDir,
    });
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
    if (chain && (await chain.findVersion(leaf, version))) {
      throw new SplinterError('PATCH_EXISTS', `realm ${leaf} already has a patch version ${version}`);
    }
    const parent =
      chain && input.parent !== undefined ? await chain.findPatch(input.parent, leaf) : undefined;
    const mods = await Promise.all((input.mods ?? []).map((reference) => this.pinMod(reference)));
    const preload: PreloadKey | undefined = input.preload
      ? await preparePreload(this.settings, await this.access())
      : undefined;

    const annotations: Record<string, string> = { [ArtifactAnnotation.Version]: version };
    if (isPatch) {
      annotations[ArtifactAnnotation.Realm] = leaf;
      if (parent) annotations[ArtifactAnnotation.Parent] = parent.version;
      if (mods.length > 0) annotations[ArtifactAnnotation.Mods] = JSON.stringify(mods);
    } else {
      annotations[ArtifactAnnotation.ModName] = leaf;
    }

    const target = await this.stores.target(destination);
    const { manifest, stats } = await this.transfer(`push ${leaf}`, destination, 'destination', (copy) =>
      pushFolder({
        kind: input.kind,
        dir: input.dir,
        tmpRoot: join(this.settings.home, 'tmp'),
        annotations,
        createdAt: this.settings.sourceDateEpoch,
        patchKey: preload?.key,
        concurrency,
        destination: target,
        copy,
      }),
    );
    const manifestDescriptor = manifest.descriptor;
    await this.recordBlobLocations(destination, manifest.manifest);
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
      blobs: transferStats(stats),
      signatures,
    };
    if (chain) {
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
    }
    return result;
  }

  async pull(input: PullInput): Promise<PullResult> {
    const concurrency = input.concurrency ?? this.options.concurrency ?? DEFAULT_CONCURRENCY;
    const { location, target, descriptor } = await this.locate(input.reference);

    // Signatures first: nothing of the artifact beyond its manifest digest is read until one verifies.
    const verifiedBy = await this.requireTrust(target, location, descriptor, input.trust);
    const manifest = await fetchManifest(target, descriptor);
    assertArtifactKind(manifest, input.kind, input.reference);

    // Content goes through the embedded store, which doubles as the client's cache: a rollback to a
    // version pulled before downloads nothing.
    const cache = await this.stores.embeddedLayout();
    const remote = location.kind === 'embedded' ? undefined : target;
    const progress = this.options.progress;
    progress?.begin(
      `pull ${location.repository}`,
      manifest.layers.reduce((sum, l) => sum + l.size, 0),
    );
    const unpacked = await unpackArtifact({
      manifest,
      content: cache,
      remote,
      onBytes: progress ? (n) => progress.advance(n) : undefined,
      output: input.output,
      replace: input.replace === true,
      patchKey: input.patchKey,
      concurrency,
    });
    progress?.end();
    if (remote && !(await cache.exists(descriptor))) {
      await cache.push(descriptor, await remote.fetch(descriptor));
    }
    await this.recordBlobLocations(location, manifest);
    const blobs = { downloaded: unpacked.fetched, cached: unpacked.cached, bytes: unpacked.fetchedBytes };
    return {
      kind: input.kind,
      digest: descriptor.digest,
      reference: formatLocation({ ...location, digest: descriptor.digest }),
      output: input.output,
      files: unpacked.files,
      bytes: unpacked.bytes,
      blobs,
      verifiedBy,
      verificationSkipped: !('keys' in input.trust),
    };
  }

  /**
   * Downloads an artifact's blobs into the local cache without unpacking anything (launchers stage
   * preloads early this way): the same signature check as a pull comes first, and a later pull or
   * rollback to it downloads nothing. Sealed layers are cached as ciphertext; no key is needed.
   */
  async prefetch(input: {
    kind: PullInput['kind'];
    reference: string;
    trust: PullInput['trust'];
    concurrency?: number | undefined;
  }): Promise<FetchResult> {
    const { location, target, descriptor } = await this.locate(input.reference);
    const verifiedBy = await this.requireTrust(target, location, descriptor, input.trust);
    const manifest = await fetchManifest(target, descriptor);
    assertArtifactKind(manifest, input.kind, input.reference);
    const cache = await this.stores.embeddedLayout();
    const stats = await this.transfer(`fetch ${location.repository}`, location, 'source', (copy) =>
      copyGraph(target, cache, descriptor, {
        ...copy,
        concurrency: input.concurrency ?? this.options.concurrency ?? DEFAULT_CONCURRENCY,
      }),
    );
    await this.recordBlobLocations(location, manifest);
    return {
      kind: input.kind,
      digest: descriptor.digest,
      reference: formatLocation({ ...location, digest: descriptor.digest }),
      blobs: { downloaded: stats.copied, cached: stats.skipped, bytes: stats.bytes },
      verifiedBy,
      verificationSkipped: !('keys' in input.trust),
    };
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
  }): Promise<ReleaseRow> {
    const chain = await this.chain();
    const patch = await chain.findPatch(input.patch, input.realm);
    const seen = (await chain.showRealm(patch.realm)).head?.id ?? null;
    return chain.activate({
      patchId: patch.id,
      realm: input.realm,
      expectedHead: seen,
      actor: input.actor,
      force: input.force,
    });
  }

  async rollback(input: { realm: string; to?: string | undefined; actor: string }): Promise<ReleaseRow> {
    const chain = await this.chain();
    const to = input.to === undefined ? undefined : (await chain.findPatch(input.to, input.realm)).id;
    return chain.rollback({ realm: input.realm, to, actor: input.actor });
  }

  async listPatches(realm: string): Promise<PatchRow[]> {
    return (await this.chain()).listPatches(realm);
  }

  async history(realm: string): Promise<ReleaseRow[]> {
    return (await this.chain()).history(realm);
  }

  async showRealm(
    realm: string,
  ): Promise<{ realm: string; head: PatchRow | null; chain: PatchRow[]; mods: ModPin[] }> {
    const shown = await (await this.chain()).showRealm(realm);
    return { ...shown, mods: shown.head?.mods ?? [] };
  }

  /**
   * Calls `onChange` after every activation or rollback that commits (PostgreSQL NOTIFY; with the
   * embedded PGlite database only changes made by this process are heard). Returns the unsubscribe.
   */
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
        onProgress: progress
          ? (event) => {
              if (event.type === 'planned') progress.expect(event.bytes);
              else if (event.type === 'bytes') progress.advance(event.bytes);
            }
          : undefined,
      });
    } finally {
      progress?.end();
    }
  }
}

function transferStats(stats: CopyStats): TransferStats {
  return { uploaded: stats.copied, skipped: stats.skipped, mounted: stats.mounted, bytes: stats.bytes };
}

async function fetchManifest(target: Target, descriptor: Descriptor): Promise<ImageManifest> {
  const bytes = await readAllLimited(await target.fetch(descriptor), MAX_MANIFEST_BYTES);
  const manifest = parseManifest(bytes, descriptor.mediaType);
  if (!('layers' in manifest)) {
    throw new SplinterError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${descriptor.digest} is an index, not an artifact manifest`,
    );
  }
  return manifest;
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

function required(value: string | undefined, flag: string): string {
  if (value === undefined) throw new SplinterError('INVALID_ARGUMENT', `${flag} is required`);
  return value;
}

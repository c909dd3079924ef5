import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import {
  abortable,
  type Descriptor,
  emptyTransferStats,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  type OciLayoutTarget,
  type ProgressListener,
  parseManifest,
  readAllLimited,
  type Target,
} from '@splintertree/oci';
import {
  ChunkedMediaType,
  decodeIndex,
  type FetchStats,
  FormatAnnotation,
  fetchRecords,
  fetchWholePack,
  type IndexEntry,
  type IndexRoot,
  IndexStore,
  type InstallResult,
  installTree,
  type KeepPolicy,
  type KeyRing,
  openRoot,
  PackCache,
  readIndex,
  type Selection,
  type Span,
  selectEntries,
  type WorkJournal,
} from '@splintertree/pack';
import { readRecord, writeRecord } from './records.js';
import { Retention, versionNeeds } from './retention.js';

/** The client's state under SPLINTER_HOME: pack bytes, decoded indexes, and what each folder holds. */
export class ClientState {
  readonly packs: PackCache;
  readonly indexes: IndexStore;
  readonly retention: Retention;

  constructor(
    readonly home: string,
    readonly blobs: OciLayoutTarget,
    /** Where installs are noted while under way (cleaned after a kill by the next run). */
    readonly journal?: WorkJournal,
  ) {
    this.packs = new PackCache(join(home, 'packs'));
    this.indexes = new IndexStore(join(home, 'indexes'));
    this.retention = new Retention(home);
  }

  /** The version every folder installed from this home holds now (its install record). */
  async currentInstalls(): Promise<{ manifestDigest: string; indexDigest: string }[]> {
    const dir = join(this.home, 'installs');
    const names = await readdir(dir).catch(() => [] as string[]);
    const records = await Promise.all(
      names.filter((n) => n.endsWith('.json')).map((n) => readRecord<InstallRecord>(join(dir, n))),
    );
    return records.filter((r): r is InstallRecord => r !== undefined);
  }

  installRecordFile(output: string): string {
    const name = createHash('sha256').update(resolvePath(output)).digest('hex').slice(0, 32);
    return join(this.home, 'installs', `${name}.json`);
  }
}

/** What an install left in a folder, so the next one rebuilds only what changed. */
interface InstallRecord {
  output: string;
  manifestDigest: string;
  indexDigest: string;
  installedAt: number;
  selection: Selection;
}

export interface OpenedVersion {
  root: IndexRoot;
  entries: IndexEntry[];
}

export interface VersionSource {
  manifest: ImageManifest;
  /** Where the blobs are: a registry, or the embedded store. */
  remote: Target;
  state: ClientState;
  keys: KeyRing;
  concurrency: number;
  onProgress?: ProgressListener | undefined;
  /** Stops the download and install (INTERRUPTED); cache and folder keep nothing cut short. */
  signal?: AbortSignal | undefined;
}

/** The root layer of a chunked version, or UNSUPPORTED_MEDIA_TYPE. */
function rootLayer(manifest: ImageManifest): Descriptor {
  const root = manifest.layers[0];
  if (!root || (root.mediaType !== ChunkedMediaType.Root && root.mediaType !== ChunkedMediaType.SealedRoot)) {
    throw new SplinterError(
      'UNSUPPORTED_MEDIA_TYPE',
      `not a ${manifest.annotations?.[FormatAnnotation.Format] ?? 'splinter-chunked-v1'} artifact: its first layer is ${root?.mediaType ?? 'missing'}`,
    );
  }
  return root;
}

/** The root's bytes, from the local store or the remote (then kept locally). */
async function rootBytes(source: VersionSource): Promise<Buffer> {
  const layer = rootLayer(source.manifest);
  const local = source.state.blobs;
  const { signal } = source;
  if (!(await local.exists(layer)))
    await abortable(signal, async () => {
      const stream = await source.remote.fetch(layer, signal ? { signal } : undefined);
      const stop = () => stream.destroy();
      signal?.addEventListener('abort', stop, { once: true });
      try {
        await local.push(layer, stream, { verifiedUpstream: true, signal });
      } finally {
        signal?.removeEventListener('abort', stop);
      }
    });
  return readAllLimited(await local.fetch(layer), 64 * 1024 * 1024);
}

/** Opens a version's root and index (the index records are fetched when not cached). */
export async function openVersion(source: VersionSource): Promise<OpenedVersion> {
  const layer = rootLayer(source.manifest);
  const root = openRoot(
    await rootBytes(source),
    layer.mediaType,
    source.manifest.annotations?.[FormatAnnotation.KeyId],
    source.keys,
  );
  const entries = await readIndex(root, {
    cache: source.state.packs,
    remote: source.remote,
    keys: source.keys,
    store: source.state.indexes,
    concurrency: source.concurrency,
    onProgress: source.onProgress,
    signal: source.signal,
  });
  return { root, entries };
}

export interface InstallInput extends VersionSource {
  manifestDigest: string;
  output: string;
  replace: boolean;
  selection: Selection;
  /** Keep files the last install did not put there (see installTree). */
  keepUnowned?: KeepPolicy | undefined;
  platform?: NodeJS.Platform | undefined;
}

export type Installed = InstallResult;

/** Installs a version into `output`, rebuilding only what differs from what the folder holds. */
export async function installVersion(input: InstallInput): Promise<Installed> {
  const version = await openVersion(input);
  const recordFile = input.state.installRecordFile(input.output);
  const record = await readRecord<InstallRecord>(recordFile);
  const previousBytes =
    record && record.output === resolvePath(input.output)
      ? await input.state.indexes.get(record.indexDigest)
      : undefined;
  const result = await installTree({
    root: version.root,
    entries: version.entries,
    keys: input.keys,
    cache: input.state.packs,
    remote: input.remote,
    output: input.output,
    replace: input.replace,
    selection: input.selection,
    previous:
      previousBytes && record
        ? { entries: decodeIndex(previousBytes), installedAt: record.installedAt }
        : undefined,
    concurrency: input.concurrency,
    onProgress: input.onProgress,
    signal: input.signal,
    journal: input.state.journal,
    keepUnowned: input.keepUnowned,
    platform: input.platform,
  });
  await writeRecord(recordFile, {
    output: resolvePath(input.output),
    manifestDigest: input.manifestDigest,
    indexDigest: version.root.index.digest,
    installedAt: Date.now(),
    selection: input.selection,
  } satisfies InstallRecord);
  const refs = selectEntries(version.entries, input.selection).flatMap((e) =>
    e.type === 'file' ? e.chunks : [],
  );
  await input.state.retention.remember({
    manifestDigest: input.manifestDigest,
    kind: 'installed',
    indexDigest: version.root.index.digest,
    packs: versionNeeds(version.root, refs),
  });
  return result;
}

/**
 * Downloads what installing a version will need, without installing (`patch fetch`, the launcher's
 * preload staging). With the root readable: exactly the records of the selected files. A preload whose
 * key is not released yet reveals nothing but its packs: every pack the cache holds nothing of is read
 * whole (the packs this version adds); records it needs from packs already partly cached are fetched by
 * range at install time.
 */
export async function prefetchVersion(
  source: VersionSource & { selection: Selection; manifestDigest: string },
): Promise<FetchStats> {
  const layer = rootLayer(source.manifest);
  const sealedWithoutKey =
    layer.mediaType === ChunkedMediaType.SealedRoot &&
    !source.keys.has(source.manifest.annotations?.[FormatAnnotation.KeyId] ?? '');
  if (!sealedWithoutKey) {
    const version = await openVersion(source);
    const refs = selectEntries(version.entries, source.selection).flatMap((e) =>
      e.type === 'file' ? e.chunks : [],
    );
    const stats = await fetchRecords(refs, {
      cache: source.state.packs,
      remote: source.remote,
      packs: new Map(version.root.packs.map((p) => [p.number, p])),
      concurrency: source.concurrency,
      onProgress: source.onProgress,
      signal: source.signal,
    });
    await source.state.retention.remember({
      manifestDigest: source.manifestDigest,
      kind: 'staged',
      indexDigest: version.root.index.digest,
      packs: versionNeeds(version.root, refs),
    });
    return stats;
  }
  await rootBytes(source);
  const stats: FetchStats = emptyTransferStats();
  for (const pack of source.manifest.layers.slice(1)) {
    if (pack.mediaType !== ChunkedMediaType.Pack) continue;
    if (await source.state.packs.touched(pack.digest)) continue;
    await fetchWholePack(
      source.remote,
      pack,
      { cache: source.state.packs, onProgress: source.onProgress, signal: source.signal },
      stats,
    );
  }
  // Sealed: which records it needs is unknown until its key is released, so every pack it lists stays.
  await source.state.retention.remember({
    manifestDigest: source.manifestDigest,
    kind: 'staged',
    packs: Object.fromEntries(
      source.manifest.layers
        .filter((l) => l.mediaType === ChunkedMediaType.Pack)
        .map((l) => [l.digest, [[0, l.size]] as Span[]]),
    ),
  });
  return stats;
}

export async function fetchManifest(target: Target, descriptor: Descriptor): Promise<ImageManifest> {
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

import { join } from 'node:path';
import type { AccessStore, ChainStore } from '@splintertree/chain';
import type { Descriptor, Digest, ImageManifest, Target } from '@splintertree/oci';
import { WorkJournal } from '@splintertree/pack';
import { BlobLocations } from './blob-locations.js';
import { type ChainDatabase, openChainDatabase } from './database.js';
import { ClientState } from './install.js';
import { journalSessions } from './leftovers.js';
import { type Location, parseLocation } from './locations.js';
import type { ProgressSink } from './progress.js';
import type { Settings } from './settings.js';
import { type RegistryAccess, Stores } from './stores.js';

export interface OpenOptions {
  settings: Settings;
  plainHttp?: boolean;
  /** CA file, --insecure and the auth file, already merged with their environment variables. */
  registryAccess?: RegistryAccess | undefined;
  progress?: ProgressSink | undefined;
  /** Warnings: a fact, and `details.reason` for an app that knows how to say the way out. */
  warn?: (message: string, details?: { reason: string; [key: string]: unknown }) => void;
  /** Parallel blob transfers; 4 unless a call says otherwise. */
  concurrency?: number;
  /** The operating system installs are for (default: this one); only Linux takes unportable trees. */
  platform?: NodeJS.Platform;
}

const DEFAULT_CONCURRENCY = 4;

/**
 * What the façade's modules share for one open Splinter: settings and options, the stores, the
 * release database and the client cache (both opened on first use), and where blobs were seen.
 */
export class CoreContext {
  readonly settings: Settings;
  readonly stores: Stores;
  readonly blobLocations: BlobLocations;
  readonly journal: WorkJournal;
  private database: Promise<ChainDatabase> | undefined;
  private state: Promise<ClientState> | undefined;

  constructor(readonly options: OpenOptions) {
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
  }

  warn(message: string, details?: { reason: string; [key: string]: unknown }): void {
    this.options.warn?.(message, details);
  }

  /** Parallel blob transfers: the call's, else the façade's, else 4. */
  concurrency(asked: number | undefined): number {
    return asked ?? this.options.concurrency ?? DEFAULT_CONCURRENCY;
  }

  private db(): Promise<ChainDatabase> {
    this.database ??= openChainDatabase(this.settings);
    return this.database;
  }

  /** The release database's chains, opened and migrated on first use. */
  async chain(): Promise<ChainStore> {
    return (await this.db()).chain;
  }

  /** Preload keys and launcher tokens (see preload.ts). */
  async access(): Promise<AccessStore> {
    return (await this.db()).access;
  }

  /** The client's cache (packs, indexes, install records). */
  clientState(): Promise<ClientState> {
    this.state ??= (async () => {
      return new ClientState(this.settings.home, await this.stores.embeddedLayout(), this.journal);
    })();
    return this.state;
  }

  /** A reference's location, the target that holds it, and the manifest descriptor it resolves to. */
  async locate(reference: string): Promise<{ location: Location; target: Target; descriptor: Descriptor }> {
    const location = parseLocation(reference);
    const target = await this.stores.target(location);
    const descriptor = await target.resolve(location.digest ?? location.tag ?? 'latest');
    return { location, target, descriptor };
  }

  /** Remembers which registry repository holds these blobs, so later pushes can mount them from there. */
  async recordBlobLocations(location: Location, manifest: ImageManifest): Promise<void> {
    if (location.kind !== 'registry') return;
    await this.blobLocations.record(location.registry, location.repository, [
      manifest.config,
      ...manifest.layers,
    ]);
  }

  async close(): Promise<void> {
    await this.stores.close();
    if (this.database) await (await this.database).client.close();
  }
}

/** A location pinned to a digest, without its tag. */
export function pinned(location: Location, digest: Digest): Location {
  const pin: Location = { ...location, digest };
  delete pin.tag;
  return pin;
}

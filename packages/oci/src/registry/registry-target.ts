import { Readable } from 'node:stream';
import { readVerified } from '../content.js';
import { type Descriptor, isManifestMediaType } from '../descriptor.js';
import { VerifyingStream } from '../digest.js';
import { MAX_MANIFEST_BYTES } from '../media-types.js';
import type { AbsentPushable, Mountable, PushOptions, RangeRead, RangeReadable, Target } from '../target.js';
import { BlobReader } from './blobs.js';
import { RegistryClient, type RegistryClientOptions } from './client.js';
import { type AuthFileOptions, dockerConfigCredentials } from './credentials.js';
import { ManifestStore } from './manifests.js';
import { Referrers } from './referrers.js';
import { Repository } from './repository.js';
import { BlobUploads, type UploadSessions } from './uploads.js';

export interface RegistryTargetOptions extends Omit<RegistryClientOptions, 'credentials'> {
  repository: string;
  /** Folder of the docker `config.json` (DOCKER_CONFIG); defaults to ~/.docker. */
  dockerConfigDir?: string | undefined;
  /** `--registry-config`/`--authfile` and REGISTRY_AUTH_FILE; win over dockerConfigDir (see authFilePath). */
  authFile?: AuthFileOptions | undefined;
  credentials?: RegistryClientOptions['credentials'];
  /** Blobs larger than this go up in chunks (PATCH with Content-Range). Default 64 MiB. */
  chunkThreshold?: number;
  chunkSize?: number;
  /** Share one client (connections, tokens) between repositories of one registry. */
  client?: RegistryClient;
  /** Told of every upload session opened and closed, so one a kill abandons can be cancelled later. */
  sessions?: UploadSessions | undefined;
}

const DEFAULT_CHUNK_THRESHOLD = 64 * 1024 * 1024;
const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;

/**
 * One repository of an OCI distribution registry, as a Target: blob reads (blobs.ts), blob uploads and
 * mounts (uploads.ts), manifests (manifests.ts) and referrers (referrers.ts) over one client.
 */
export class RegistryTarget implements Target, Mountable, RangeReadable, AbsentPushable {
  readonly registryHost: string;
  readonly repository: string;
  readonly location: string;
  readonly client: RegistryClient;
  private readonly ownsClient: boolean;
  private readonly blobs: BlobReader;
  private readonly uploads: BlobUploads;
  private readonly manifests: ManifestStore;
  private readonly referrersOf: Referrers;

  constructor(options: RegistryTargetOptions) {
    this.registryHost = options.registry;
    this.repository = options.repository;
    this.location = `${options.registry}/${options.repository}`;
    this.ownsClient = options.client === undefined;
    this.client =
      options.client ??
      new RegistryClient({
        ...options,
        credentials:
          options.credentials ??
          dockerConfigCredentials({ configDir: options.dockerConfigDir, ...options.authFile }),
      });
    const repo = new Repository(this.client, this.repository, this.location);
    this.blobs = new BlobReader(repo);
    this.uploads = new BlobUploads(repo, {
      chunkThreshold: options.chunkThreshold ?? DEFAULT_CHUNK_THRESHOLD,
      chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE,
      sessions: options.sessions,
    });
    this.manifests = new ManifestStore(repo);
    this.referrersOf = new Referrers(repo, this.manifests);
  }

  get stats() {
    return this.client.stats;
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }

  exists(desc: Descriptor): Promise<boolean> {
    return isManifestMediaType(desc.mediaType) ? this.manifests.exists(desc) : this.blobs.exists(desc);
  }

  async fetch(desc: Descriptor): Promise<Readable> {
    if (isManifestMediaType(desc.mediaType)) {
      const { bytes } = await this.manifests.fetch(desc.digest);
      return Readable.from([bytes]).pipe(new VerifyingStream(desc));
    }
    return this.blobs.fetch(desc);
  }

  fetchRange(desc: Descriptor, start: number, end: number): Promise<RangeRead> {
    return this.blobs.fetchRange(desc, start, end);
  }

  async push(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    if (isManifestMediaType(expected.mediaType)) {
      const bytes = await readVerified(expected, content, MAX_MANIFEST_BYTES);
      const put = await this.manifests.put(expected, bytes, expected.digest);
      await this.referrersOf.pushed(expected, expected.digest, put);
      return;
    }
    if (await this.blobs.exists(expected)) {
      if (!(content instanceof Uint8Array)) content.resume();
      return;
    }
    await this.uploads.upload(expected, content, options);
  }

  /** A blob the caller has just seen missing goes straight up, without a second HEAD. */
  pushAbsent(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    if (isManifestMediaType(expected.mediaType)) return this.push(expected, content, options);
    return this.uploads.upload(expected, content, options);
  }

  /**
   * Cancels an upload session (DELETE on its location). True when the registry has no such session any
   * more (204, or 404: it finished, expired or was cancelled already).
   */
  cancelUpload(url: string): Promise<boolean> {
    return this.uploads.cancel(url);
  }

  mount(desc: Descriptor, fromRepository: string): Promise<boolean> {
    return this.uploads.mount(desc, fromRepository);
  }

  resolve(reference: string): Promise<Descriptor> {
    return this.manifests.resolve(reference);
  }

  async tag(desc: Descriptor, reference: string): Promise<void> {
    const { bytes } = await this.manifests.fetch(desc.digest);
    await this.manifests.put(desc, bytes, reference);
  }

  referrers(subject: Descriptor, artifactType?: string): Promise<Descriptor[]> {
    return this.referrersOf.list(subject, artifactType);
  }
}

import { Readable } from 'node:stream';
import { readVerified } from '../content.js';
import { type Descriptor, isManifestMediaType } from '../descriptor.js';
import { VerifyingStream } from '../digest.js';
import { MAX_MANIFEST_BYTES } from '../media-types.js';
import type {
  AbsentPushable,
  FetchOptions,
  Mountable,
  PushOptions,
  RangeRead,
  RangeReadable,
  Target,
} from '../target.js';
import { BlobReader } from './blobs.js';
import { RegistryClient, type RegistryClientOptions } from './client.js';
import { type AuthFileOptions, dockerConfigCredentials } from './credentials.js';
import { unlessAborted } from './failure.js';
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

  exists(desc: Descriptor, options?: FetchOptions): Promise<boolean> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: HEAD ${desc.digest}`, () =>
      isManifestMediaType(desc.mediaType)
        ? this.manifests.exists(desc, signal)
        : this.blobs.exists(desc, signal),
    );
  }

  fetch(desc: Descriptor, options?: FetchOptions): Promise<Readable> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: GET ${desc.digest}`, async () => {
      if (!isManifestMediaType(desc.mediaType)) return this.blobs.fetch(desc, signal);
      const { bytes } = await this.manifests.fetch(desc.digest, signal);
      return Readable.from([bytes]).pipe(new VerifyingStream(desc));
    });
  }

  fetchRange(desc: Descriptor, start: number, end: number, options?: FetchOptions): Promise<RangeRead> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: GET ${desc.digest}`, () =>
      this.blobs.fetchRange(desc, start, end, signal),
    );
  }

  push(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    return this.pushBlobOrManifest(expected, content, options, true);
  }

  /** A blob the caller has just seen missing goes straight up, without a second HEAD. */
  pushAbsent(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    return this.pushBlobOrManifest(expected, content, options, false);
  }

  private pushBlobOrManifest(
    expected: Descriptor,
    content: Readable | Uint8Array,
    options: PushOptions | undefined,
    check: boolean,
  ): Promise<void> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: push ${expected.digest}`, async () => {
      if (isManifestMediaType(expected.mediaType)) {
        const bytes = await readVerified(expected, content, MAX_MANIFEST_BYTES);
        const put = await this.manifests.put(expected, bytes, expected.digest, signal);
        await this.referrersOf.pushed(expected, expected.digest, put, signal);
        return;
      }
      if (check && (await this.blobs.exists(expected, signal))) {
        if (!(content instanceof Uint8Array)) content.resume();
        return;
      }
      await this.uploads.upload(expected, content, options);
    });
  }

  /**
   * Cancels an upload session (DELETE on its location). True when the registry has no such session any
   * more (204, or 404: it finished, expired or was cancelled already).
   */
  cancelUpload(url: string): Promise<boolean> {
    return this.uploads.cancel(url);
  }

  mount(desc: Descriptor, fromRepository: string, options?: FetchOptions): Promise<boolean> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: mount ${desc.digest}`, () =>
      this.uploads.mount(desc, fromRepository, signal),
    );
  }

  resolve(reference: string, options?: FetchOptions): Promise<Descriptor> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: resolve ${reference}`, () =>
      this.manifests.resolve(reference, signal),
    );
  }

  tag(desc: Descriptor, reference: string, options?: FetchOptions): Promise<void> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: tag ${reference}`, async () => {
      const { bytes } = await this.manifests.fetch(desc.digest, signal);
      await this.manifests.put(desc, bytes, reference, signal);
    });
  }

  referrers(subject: Descriptor, artifactType?: string, options?: FetchOptions): Promise<Descriptor[]> {
    const signal = options?.signal;
    return unlessAborted(signal, `${this.location}: referrers of ${subject.digest}`, () =>
      this.referrersOf.list(subject, artifactType, signal),
    );
  }
}

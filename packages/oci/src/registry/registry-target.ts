import { Readable } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import { confirmedMerge } from '../confirmed-merge.js';
import { progressStream, readVerified, sizeLimit, toReadable } from '../content.js';
import { type Descriptor, type ImageIndex, isManifestMediaType } from '../descriptor.js';
import { digestHex, isDigest, sha256Digest, VerifyingStream } from '../digest.js';
import { parseManifest } from '../graph.js';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, MediaType } from '../media-types.js';
import { readBodyLimited } from '../read-limited.js';
import type { Mountable, PushOptions, RangeRead, RangeReadable, Target } from '../target.js';
import { RegistryClient, type RegistryClientOptions, type RegistryResponse } from './client.js';
import { type AuthFileOptions, dockerConfigCredentials } from './credentials.js';
import { registryFailure } from './failure.js';
import { BlobReader } from './ranges.js';
import { delayFor, sleep } from './retry.js';

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

/** An open upload session, as a journal needs it to cancel the session later (`cancelUpload`). */
export interface UploadSession {
  /** The registry's origin, `http(s)://host[:port]`. */
  origin: string;
  repository: string;
  /** The session's current location (it moves with every chunk). */
  url: string;
}

export interface UploadSessions {
  opened(session: UploadSession): Promise<{
    moved(session: UploadSession): Promise<void>;
    closed(): Promise<void>;
  }>;
}

const DEFAULT_CHUNK_THRESHOLD = 64 * 1024 * 1024;
const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;
const MANIFEST_BLOB_RETRIES = 4;

/** One repository of an OCI distribution registry, as a Target. */
export class RegistryTarget implements Target, Mountable, RangeReadable {
  readonly registryHost: string;
  readonly repository: string;
  readonly location: string;
  readonly client: RegistryClient;
  private readonly ownsClient: boolean;
  private readonly chunkThreshold: number;
  private readonly chunkSize: number;
  private readonly blobs: BlobReader;
  private readonly sessions: UploadSessions | undefined;
  private referrersApi: boolean | undefined;

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
    this.chunkThreshold = options.chunkThreshold ?? DEFAULT_CHUNK_THRESHOLD;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.blobs = new BlobReader(this.client, this.repository, this.location);
    this.sessions = options.sessions;
  }

  get stats() {
    return this.client.stats;
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }

  private scopes(push = false, extra: string[] = []): string[] {
    return [`repository:${this.repository}:${push ? 'pull,push' : 'pull'}`, ...extra];
  }

  private path(kind: 'blobs' | 'manifests' | 'referrers', reference: string): string {
    return `/v2/${this.repository}/${kind}/${reference}`;
  }

  // ---- blobs and manifests ----

  async exists(desc: Descriptor): Promise<boolean> {
    const kind = isManifestMediaType(desc.mediaType) ? 'manifests' : 'blobs';
    const response = await this.client.send({
      method: 'HEAD',
      url: this.path(kind, desc.digest),
      headers: kind === 'manifests' ? { accept: MANIFEST_ACCEPT.join(', ') } : {},
      scopes: this.scopes(),
      replayable: true,
    });
    if (response.status !== 200 && response.status !== 404)
      throw await this.failure(response, `HEAD ${desc.digest}`);
    await response.body.dump();
    return response.status === 200;
  }

  async fetch(desc: Descriptor): Promise<Readable> {
    if (isManifestMediaType(desc.mediaType)) {
      const bytes = await this.fetchManifest(desc.digest);
      return Readable.from([bytes.bytes]).pipe(new VerifyingStream(desc));
    }
    return this.blobs.fetch(desc);
  }

  fetchRange(desc: Descriptor, start: number, end: number): Promise<RangeRead> {
    return this.blobs.fetchRange(desc, start, end);
  }

  async push(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    if (isManifestMediaType(expected.mediaType)) {
      const bytes = await readVerified(expected, content, MAX_MANIFEST_BYTES);
      await this.putManifest(expected, bytes, expected.digest);
      return;
    }
    if (!options?.absent && (await this.exists(expected))) {
      if (!(content instanceof Uint8Array)) content.resume();
      return;
    }
    await this.uploadBlob(expected, content, options);
  }

  private async startUpload(): Promise<string> {
    const response = await this.client.send({
      method: 'POST',
      url: `/v2/${this.repository}/blobs/uploads/`,
      headers: { 'content-length': '0' },
      scopes: this.scopes(true),
      replayable: true,
    });
    await response.body.dump();
    if (response.status !== 202 || !response.headers.location)
      throw await this.failure(response, 'start upload');
    return new URL(response.headers.location, response.url).href;
  }

  /**
   * Cancels an upload session (DELETE on its location). True when the registry has no such session any
   * more (204, or 404: it finished, expired or was cancelled already).
   */
  async cancelUpload(url: string): Promise<boolean> {
    const response = await this.client.send({ method: 'DELETE', url, scopes: this.scopes(true) });
    await response.body.dump();
    return (
      response.status === 204 || response.status === 202 || response.status === 200 || response.status === 404
    );
  }

  private async uploadBlob(
    expected: Descriptor,
    content: Readable | Uint8Array,
    options?: PushOptions,
  ): Promise<void> {
    let location = await this.startUpload();
    const session = (url: string): UploadSession => ({
      origin: this.client.origin,
      repository: this.repository,
      url,
    });
    const journal = await this.sessions?.opened(session(location)).catch(async (error: unknown) => {
      await this.cancelUpload(location).catch(() => false);
      throw error;
    });
    const source = toReadable(content);
    // The registry checks the digest when the upload is committed (DIGEST_INVALID, which is our
    // DIGEST_MISMATCH), so the client only counts bytes: hashing here too would cost a core-second per
    // GiB on a machine the registry may share, for an error that comes a moment earlier.
    const verifying = sizeLimit(expected);
    const counted = progressStream(options?.onProgress);
    source.on('error', (error) => verifying.destroy(error));
    verifying.on('error', (error) => counted.destroy(error));
    source.pipe(verifying).pipe(counted);
    this.client.stats.blobUploads += 1;
    try {
      if (expected.size > this.chunkThreshold) {
        const chunks = chunksOf(counted, this.chunkSize);
        let offset = 0;
        for await (const chunk of chunks) {
          const end = offset + chunk.length - 1;
          const response = await this.client.send({
            method: 'PATCH',
            url: location,
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(chunk.length),
              'content-range': `${offset}-${end}`,
            },
            body: () => Readable.from(chunk.body),
            scopes: this.scopes(true),
          });
          await response.body.dump();
          if (response.status !== 202 || !response.headers.location)
            throw await this.failure(response, `upload chunk ${offset}-${end}`);
          location = new URL(response.headers.location, response.url).href;
          await journal?.moved(session(location));
          offset = end + 1;
          this.client.stats.chunks += 1;
        }
        await this.finishUpload(location, expected, undefined);
      } else {
        await this.finishUpload(location, expected, counted);
      }
      await journal?.closed();
    } catch (error) {
      counted.destroy();
      // Cancelled now; if the registry cannot be told, the journal keeps it for the next run.
      if (await this.cancelUpload(location).catch(() => false)) await journal?.closed();
      throw error;
    }
  }

  private async finishUpload(
    location: string,
    expected: Descriptor,
    body: Readable | undefined,
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', expected.digest);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    headers['content-length'] = body ? String(expected.size) : '0';
    const response = await this.client.send({
      method: 'PUT',
      url: url.href,
      headers,
      ...(body ? { body: () => body } : {}),
      scopes: this.scopes(true),
    });
    if (response.status !== 201) throw await this.failure(response, `finish upload of ${expected.digest}`);
    await response.body.dump();
  }

  async mount(desc: Descriptor, fromRepository: string): Promise<boolean> {
    const from = encodeURIComponent(fromRepository);
    const response = await this.client.send({
      method: 'POST',
      url: `/v2/${this.repository}/blobs/uploads/?mount=${desc.digest}&from=${from}`,
      headers: { 'content-length': '0' },
      scopes: this.scopes(true, [`repository:${fromRepository}:pull`]),
      replayable: true,
    });
    await response.body.dump();
    if (response.status === 201) {
      this.client.stats.blobMounts += 1;
      return true;
    }
    if (response.status === 202 && response.headers.location) {
      await this.cancelUpload(new URL(response.headers.location, response.url).href).catch(() => false);
      return false;
    }
    if (response.status === 404 || response.status === 401 || response.status === 403) return false;
    throw await this.failure(response, `mount ${desc.digest} from ${fromRepository}`);
  }

  private async fetchManifest(
    reference: string,
  ): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    const response = await this.client.send({
      method: 'GET',
      url: this.path('manifests', reference),
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: this.scopes(),
      replayable: true,
    });
    if (response.status !== 200) throw await this.failure(response, `GET manifest ${reference}`);
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > MAX_MANIFEST_BYTES) {
      await response.body.dump();
      throw new SplinterError(
        'MANIFEST_TOO_LARGE',
        `manifest ${reference} is ${declared} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
      );
    }
    const bytes = await readBodyLimited(response.body, MAX_MANIFEST_BYTES, `manifest ${reference}`, {
      code: 'MANIFEST_TOO_LARGE',
    });
    const digest = sha256Digest(bytes);
    if (isDigest(reference) && digest !== reference) {
      throw new SplinterError(
        'DIGEST_MISMATCH',
        `registry returned manifest ${digest} when asked for ${reference}`,
      );
    }
    const mediaType = (response.headers['content-type'] ?? '').split(';')[0]!.trim();
    return { bytes, mediaType, digest };
  }

  private async putManifest(desc: Descriptor, bytes: Buffer, reference: string): Promise<void> {
    if (bytes.byteLength > MAX_MANIFEST_BYTES) {
      throw new SplinterError(
        'MANIFEST_TOO_LARGE',
        `manifest is ${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
      );
    }
    const manifest = parseManifest(bytes, desc.mediaType);
    let subjectHeader: string | undefined;
    for (let attempt = 1; ; attempt++) {
      const response = await this.client.send({
        method: 'PUT',
        url: this.path('manifests', reference),
        headers: { 'content-type': desc.mediaType, 'content-length': String(bytes.byteLength) },
        body: () => bytes,
        scopes: this.scopes(true),
        replayable: true,
      });
      if (response.status === 201) {
        subjectHeader = response.headers['oci-subject'] as string | undefined;
        await response.body.dump();
        break;
      }
      const error = await this.failure(response, `PUT manifest ${reference}`);
      // Manifests go up after their blobs. Distribution's filesystem driver rewrites a repository's blob
      // link in place when two clients upload the same blob at once, and a manifest checked in that
      // window names a blob the registry briefly cannot read (MANIFEST_BLOB_UNKNOWN): ask again, bounded.
      const codes = (error.details?.registryCodes ?? []) as string[];
      if (!codes.includes('MANIFEST_BLOB_UNKNOWN') || attempt >= MANIFEST_BLOB_RETRIES) throw error;
      await sleep(delayFor(this.client.retry, attempt, undefined));
    }
    if (manifest.subject && isDigest(reference)) {
      if (subjectHeader === manifest.subject.digest) {
        this.referrersApi = true;
      } else {
        const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
        const artifactType =
          manifest.artifactType ?? ('config' in manifest ? manifest.config.mediaType : undefined);
        if (artifactType) entry.artifactType = artifactType;
        if (manifest.annotations) entry.annotations = manifest.annotations;
        await this.addToFallbackIndex(manifest.subject, entry);
      }
    }
  }

  async resolve(reference: string): Promise<Descriptor> {
    const response = await this.client.send({
      method: 'HEAD',
      url: this.path('manifests', reference),
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: this.scopes(),
      replayable: true,
    });
    if (response.status === 404) {
      await response.body.dump();
      throw new SplinterError('NOT_FOUND', `${this.location} has no manifest ${reference}`);
    }
    if (response.status !== 200) throw await this.failure(response, `resolve ${reference}`);
    await response.body.dump();
    const digest = response.headers['docker-content-digest'];
    const size = Number(response.headers['content-length']);
    const mediaType = (response.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (
      response.status === 200 &&
      digest &&
      isDigest(digest) &&
      Number.isFinite(size) &&
      isManifestMediaType(mediaType)
    ) {
      if (isDigest(reference) && digest !== reference) {
        throw new SplinterError('DIGEST_MISMATCH', `registry resolved ${reference} to ${digest}`);
      }
      return { mediaType, digest, size };
    }
    // HEAD without the headers we need: fall back to GET.
    const fetched = await this.fetchManifest(reference);
    return {
      mediaType: fetched.mediaType,
      digest: fetched.digest as Descriptor['digest'],
      size: fetched.bytes.byteLength,
    };
  }

  async tag(desc: Descriptor, reference: string): Promise<void> {
    const { bytes } = await this.fetchManifest(desc.digest);
    await this.putManifest(desc, bytes, reference);
  }

  // ---- referrers ----

  async referrers(subject: Descriptor, artifactType?: string): Promise<Descriptor[]> {
    let found: Descriptor[] | undefined;
    if (this.referrersApi !== false) {
      const response = await this.client.send({
        method: 'GET',
        url: this.path('referrers', subject.digest),
        headers: { accept: MediaType.ImageIndex },
        scopes: this.scopes(),
        replayable: true,
      });
      const type = (response.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (response.status === 200 && type === MediaType.ImageIndex) {
        this.referrersApi = true;
        const index = parseManifest(
          await readBodyLimited(response.body, MAX_MANIFEST_BYTES, `referrers of ${subject.digest}`, {
            code: 'MANIFEST_TOO_LARGE',
          }),
          MediaType.ImageIndex,
        );
        found = 'manifests' in index ? index.manifests : [];
      } else {
        await response.body.dump();
        this.referrersApi = false;
      }
    }
    found ??= (await this.readFallbackIndex(subject))?.manifests ?? [];
    return artifactType === undefined ? found : found.filter((d) => d.artifactType === artifactType);
  }

  private fallbackTag(subject: Descriptor): string {
    return `sha256-${digestHex(subject.digest)}`;
  }

  private async readFallbackIndex(subject: Descriptor): Promise<ImageIndex | undefined> {
    try {
      const { bytes } = await this.fetchManifest(this.fallbackTag(subject));
      const index = parseManifest(bytes);
      return 'manifests' in index ? index : undefined;
    } catch (error) {
      if (error instanceof SplinterError && (error.code === 'NOT_FOUND' || error.code === 'MANIFEST_UNKNOWN'))
        return undefined;
      throw error;
    }
  }

  /**
   * The referrers tag schema: read `sha256-<hex>`, append the referrer if new, put it back. Two
   * referrers written at once (two signers) would otherwise overwrite each other's entry.
   */
  private async addToFallbackIndex(subject: Descriptor, entry: Descriptor): Promise<void> {
    const listed = async () =>
      (await this.readFallbackIndex(subject))?.manifests.some((d) => d.digest === entry.digest) === true;
    await confirmedMerge({
      what: `${this.location}:${this.fallbackTag(subject)}`,
      present: listed,
      merge: async () => {
        const index: ImageIndex = (await this.readFallbackIndex(subject)) ?? {
          schemaVersion: 2,
          mediaType: MediaType.ImageIndex,
          manifests: [],
        };
        if (index.manifests.some((d) => d.digest === entry.digest)) return;
        index.manifests.push(entry);
        const bytes = Buffer.from(JSON.stringify(index));
        const desc: Descriptor = {
          mediaType: MediaType.ImageIndex,
          digest: sha256Digest(bytes),
          size: bytes.byteLength,
        };
        await this.putManifest(desc, bytes, this.fallbackTag(subject));
      },
    });
  }

  // ---- errors ----

  private failure(response: RegistryResponse, what: string): Promise<SplinterError> {
    return registryFailure(response, this.location, what);
  }
}

/** Splits a stream into chunks of `size` bytes; each chunk is buffered (bounded by `size`). */
async function* chunksOf(source: Readable, size: number): AsyncGenerator<{ body: Buffer[]; length: number }> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const data of source as AsyncIterable<Buffer>) {
    let chunk = data;
    while (chunk.byteLength > 0) {
      const take = Math.min(size - length, chunk.byteLength);
      parts.push(chunk.subarray(0, take));
      length += take;
      chunk = chunk.subarray(take);
      if (length === size) {
        yield { body: parts, length };
        parts = [];
        length = 0;
      }
    }
  }
  if (length > 0) yield { body: parts, length };
}

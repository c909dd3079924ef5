import { SplinterError } from '@splintertree/errors';
import { type Descriptor, isManifestMediaType, type Manifest } from '../descriptor.js';
import { isDigest, sha256Digest } from '../digest.js';
import { parseManifest } from '../graph.js';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES } from '../media-types.js';
import { readBodyLimited } from '../read-limited.js';
import type { Repository } from './repository.js';
import { delayFor, sleep } from './retry.js';

const MANIFEST_BLOB_RETRIES = 4;

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

export interface PutManifest {
  manifest: Manifest;
  /** The registry's `OCI-Subject` answer: set when it indexed the manifest's subject itself. */
  subjectHeader: string | undefined;
}

/** The manifests of one repository: HEAD, GET (bounded, digest-checked), PUT and tag resolution. */
export class ManifestStore {
  constructor(private readonly repo: Repository) {}

  exists(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    return this.repo.has('manifests', desc.digest, signal, { accept: MANIFEST_ACCEPT.join(', ') });
  }

  async fetch(reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const response = await this.repo.client.send({
      method: 'GET',
      url: this.repo.path('manifests', reference),
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: this.repo.scopes(),
      replayable: true,
      signal,
    });
    if (response.status !== 200) throw await this.repo.failure(response, `GET manifest ${reference}`);
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

  /** PUT under `reference` (its digest or a tag). */
  async put(desc: Descriptor, bytes: Buffer, reference: string, signal?: AbortSignal): Promise<PutManifest> {
    if (bytes.byteLength > MAX_MANIFEST_BYTES) {
      throw new SplinterError(
        'MANIFEST_TOO_LARGE',
        `manifest is ${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
      );
    }
    const manifest = parseManifest(bytes, desc.mediaType);
    for (let attempt = 1; ; attempt++) {
      const response = await this.repo.client.send({
        method: 'PUT',
        url: this.repo.path('manifests', reference),
        headers: { 'content-type': desc.mediaType, 'content-length': String(bytes.byteLength) },
        body: () => bytes,
        scopes: this.repo.scopes(true),
        replayable: true,
        signal,
      });
      if (response.status === 201) {
        const subjectHeader = response.headers['oci-subject'] as string | undefined;
        await response.body.dump();
        return { manifest, subjectHeader };
      }
      const error = await this.repo.failure(response, `PUT manifest ${reference}`);
      // Manifests go up after their blobs. Distribution's filesystem driver rewrites a repository's blob
      // link in place when two clients upload the same blob at once, and a manifest checked in that
      // window names a blob the registry briefly cannot read (MANIFEST_BLOB_UNKNOWN): ask again, bounded.
      const codes = (error.details?.registryCodes ?? []) as string[];
      if (!codes.includes('MANIFEST_BLOB_UNKNOWN') || attempt >= MANIFEST_BLOB_RETRIES) throw error;
      await sleep(delayFor(this.repo.client.retry, attempt, undefined), undefined, { signal });
    }
  }

  async resolve(reference: string, signal?: AbortSignal): Promise<Descriptor> {
    const response = await this.repo.client.send({
      method: 'HEAD',
      url: this.repo.path('manifests', reference),
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: this.repo.scopes(),
      replayable: true,
      signal,
    });
    if (response.status === 404) {
      await response.body.dump();
      throw new SplinterError('NOT_FOUND', `${this.repo.location} has no manifest ${reference}`);
    }
    if (response.status !== 200) throw await this.repo.failure(response, `resolve ${reference}`);
    await response.body.dump();
    const digest = response.headers['docker-content-digest'];
    const size = Number(response.headers['content-length']);
    const mediaType = (response.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (digest && isDigest(digest) && Number.isFinite(size) && isManifestMediaType(mediaType)) {
      if (isDigest(reference) && digest !== reference) {
        throw new SplinterError('DIGEST_MISMATCH', `registry resolved ${reference} to ${digest}`);
      }
      return { mediaType, digest, size };
    }
    // HEAD without the headers we need: fall back to GET.
    const fetched = await this.fetch(reference, signal);
    return {
      mediaType: fetched.mediaType,
      digest: fetched.digest as Descriptor['digest'],
      size: fetched.bytes.byteLength,
    };
  }
}

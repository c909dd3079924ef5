import { SplinterError } from '@splintertree/errors';
import { confirmedMerge } from '../confirmed-merge.js';
import type { Descriptor, ImageIndex, Manifest } from '../descriptor.js';
import { digestHex, isDigest, sha256Digest } from '../digest.js';
import { parseManifest } from '../graph.js';
import { MAX_MANIFEST_BYTES, MediaType } from '../media-types.js';
import { readBodyLimited } from '../read-limited.js';
import type { ManifestStore, PutManifest } from './manifests.js';
import type { Repository } from './repository.js';

/**
 * The referrers of one repository: the referrers API where the registry has it, else the referrers
 * tag schema (an index tagged `sha256-<hex>` of the subject), which this keeps up to date on push.
 */
export class Referrers {
  /** Whether the registry serves the referrers API; unknown until it has been asked or has indexed one. */
  private api: boolean | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly manifests: ManifestStore,
  ) {}

  async list(subject: Descriptor, artifactType?: string, signal?: AbortSignal): Promise<Descriptor[]> {
    let found: Descriptor[] | undefined;
    if (this.api !== false) {
      const response = await this.repo.client.send({
        method: 'GET',
        url: this.repo.path('referrers', subject.digest),
        headers: { accept: MediaType.ImageIndex },
        scopes: this.repo.scopes(),
        replayable: true,
        signal,
      });
      const type = (response.headers['content-type'] ?? '').split(';')[0]!.trim();
      if (response.status === 200 && type === MediaType.ImageIndex) {
        this.api = true;
        const index = parseManifest(
          await readBodyLimited(response.body, MAX_MANIFEST_BYTES, `referrers of ${subject.digest}`, {
            code: 'MANIFEST_TOO_LARGE',
          }),
          MediaType.ImageIndex,
        );
        found = 'manifests' in index ? index.manifests : [];
      } else {
        await response.body.dump();
        this.api = false;
      }
    }
    found ??= (await this.readFallbackIndex(subject, signal))?.manifests ?? [];
    return artifactType === undefined ? found : found.filter((d) => d.artifactType === artifactType);
  }

  /**
   * After a manifest went up under `reference`: one with a subject, pushed by digest, is listed in the
   * subject's fallback index unless the registry answered that it indexed the subject itself.
   */
  async pushed(
    desc: Descriptor,
    reference: string,
    { manifest, subjectHeader }: PutManifest,
    signal?: AbortSignal,
  ): Promise<void> {
    if (!manifest.subject || !isDigest(reference)) return;
    if (subjectHeader === manifest.subject.digest) {
      this.api = true;
      return;
    }
    await this.addToFallbackIndex(manifest.subject, referrerEntry(desc, manifest), signal);
  }

  private fallbackTag(subject: Descriptor): string {
    return `sha256-${digestHex(subject.digest)}`;
  }

  private async readFallbackIndex(
    subject: Descriptor,
    signal?: AbortSignal,
  ): Promise<ImageIndex | undefined> {
    try {
      const { bytes } = await this.manifests.fetch(this.fallbackTag(subject), signal);
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
  private async addToFallbackIndex(
    subject: Descriptor,
    entry: Descriptor,
    signal?: AbortSignal,
  ): Promise<void> {
    const listed = async () =>
      (await this.readFallbackIndex(subject, signal))?.manifests.some((d) => d.digest === entry.digest) ===
      true;
    await confirmedMerge({
      what: `${this.repo.location}:${this.fallbackTag(subject)}`,
      present: listed,
      merge: async () => {
        const index: ImageIndex = (await this.readFallbackIndex(subject, signal)) ?? {
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
        // An index has no subject: nothing to list in turn.
        await this.manifests.put(desc, bytes, this.fallbackTag(subject), signal);
      },
    });
  }
}

/** The descriptor a referrers index lists for `manifest`: its artifact type and annotations. */
function referrerEntry(desc: Descriptor, manifest: Manifest): Descriptor {
  const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  const artifactType =
    manifest.artifactType ?? ('config' in manifest ? manifest.config.mediaType : undefined);
  if (artifactType) entry.artifactType = artifactType;
  if (manifest.annotations) entry.annotations = manifest.annotations;
  return entry;
}

import { Readable } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import { blobUnknown, checkRange, readVerified } from '../content.js';
import { type Descriptor, isManifestMediaType } from '../descriptor.js';
import { isDigest } from '../digest.js';
import { parseManifest } from '../graph.js';
import type { RangeRead, RangeReadable, Target } from '../target.js';

/** An in-memory Target: for tests and small tools. Verifies every push like the other stores. */
export class MemoryTarget implements Target, RangeReadable {
  readonly location = 'memory';
  private readonly blobs = new Map<string, Buffer>();
  private readonly descriptors = new Map<string, Descriptor>();
  private readonly tags = new Map<string, Descriptor>();
  private readonly subjects = new Map<string, Descriptor[]>();

  async fetch(desc: Descriptor): Promise<Readable> {
    const bytes = this.blobs.get(desc.digest);
    if (!bytes) throw blobUnknown(desc, this.location);
    return Readable.from([bytes]);
  }

  async fetchRange(desc: Descriptor, start: number, end: number): Promise<RangeRead> {
    checkRange(desc, start, end);
    const bytes = this.blobs.get(desc.digest);
    if (!bytes) throw blobUnknown(desc, this.location);
    return { kind: 'range', stream: Readable.from([bytes.subarray(start, end)]) };
  }

  async exists(desc: Descriptor): Promise<boolean> {
    return this.blobs.has(desc.digest);
  }

  async push(expected: Descriptor, content: Readable | Uint8Array): Promise<void> {
    const bytes = await readVerified(expected, content, Number.MAX_SAFE_INTEGER);
    if (this.blobs.has(expected.digest)) return;
    if (isManifestMediaType(expected.mediaType)) {
      const manifest = parseManifest(bytes, expected.mediaType);
      if (manifest.subject) {
        const entry: Descriptor = {
          mediaType: expected.mediaType,
          digest: expected.digest,
          size: expected.size,
        };
        const artifactType =
          manifest.artifactType ?? ('config' in manifest ? manifest.config.mediaType : undefined);
        if (artifactType) entry.artifactType = artifactType;
        if (manifest.annotations) entry.annotations = manifest.annotations;
        const list = this.subjects.get(manifest.subject.digest) ?? [];
        list.push(entry);
        this.subjects.set(manifest.subject.digest, list);
      }
    }
    this.blobs.set(expected.digest, bytes);
    this.descriptors.set(expected.digest, {
      mediaType: expected.mediaType,
      digest: expected.digest,
      size: expected.size,
    });
  }

  async resolve(reference: string): Promise<Descriptor> {
    const found = isDigest(reference) ? this.descriptors.get(reference) : this.tags.get(reference);
    if (!found) throw new SplinterError('NOT_FOUND', `${this.location} has no manifest ${reference}`);
    return found;
  }

  async tag(desc: Descriptor, reference: string): Promise<void> {
    if (!this.blobs.has(desc.digest)) throw blobUnknown(desc, this.location);
    this.tags.set(reference, { mediaType: desc.mediaType, digest: desc.digest, size: desc.size });
  }

  async referrers(subject: Descriptor, artifactType?: string): Promise<Descriptor[]> {
    const all = this.subjects.get(subject.digest) ?? [];
    return artifactType === undefined ? [...all] : all.filter((d) => d.artifactType === artifactType);
  }
}

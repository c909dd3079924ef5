import type { Readable } from 'node:stream';
import type {
  Descriptor,
  FetchOptions,
  PrivateCopyable,
  PushOptions,
  RangeRead,
  RangeReadable,
  Target,
} from '@splintertree/oci';
import { isDigest } from '@splintertree/oci';

/**
 * One repository inside the embedded store: the embedded OCI layout holds every repository's blobs
 * once (shared dedup), and names tags `<repository>:<tag>` in index.json. The same layout is the pull
 * cache, whose blobs a pull may hard-link into a client tree; pushed here, content becomes the store's
 * own, so a blob shared with a tree does not count as held and is stored again as a private copy.
 */
export class ScopedTarget implements Target, RangeReadable {
  readonly location: string;

  constructor(
    private readonly inner: Target & RangeReadable & PrivateCopyable,
    readonly repository: string,
  ) {
    this.location = `${inner.location}#${repository}`;
  }

  fetch(desc: Descriptor, options?: FetchOptions): Promise<Readable> {
    return this.inner.fetch(desc, options);
  }

  fetchRange(desc: Descriptor, start: number, end: number, options?: FetchOptions): Promise<RangeRead> {
    return this.inner.fetchRange(desc, start, end, options);
  }

  async exists(desc: Descriptor, options?: FetchOptions): Promise<boolean> {
    return (await this.inner.exists(desc, options)) && !(await this.inner.isShared(desc));
  }

  push(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    return this.inner.pushPrivate(expected, content, options);
  }

  resolve(reference: string, options?: FetchOptions): Promise<Descriptor> {
    return this.inner.resolve(isDigest(reference) ? reference : this.scoped(reference), options);
  }

  tag(desc: Descriptor, reference: string, options?: FetchOptions): Promise<void> {
    return this.inner.tag(desc, this.scoped(reference), options);
  }

  referrers(subject: Descriptor, artifactType?: string, options?: FetchOptions): Promise<Descriptor[]> {
    return this.inner.referrers(subject, artifactType, options);
  }

  private scoped(tag: string): string {
    return `${this.repository}:${tag}`;
  }
}

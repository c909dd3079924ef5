import type { Readable } from 'node:stream';
import type { SplinterError } from '@splintertree/errors';
import {
  Annotation,
  type Descriptor,
  type FetchOptions,
  type PushOptions,
  type Target,
} from '@splintertree/oci';

/**
 * The destination of a re-push of a version that exists: blobs it holds are skipped as usual, and any
 * other blob (a new pack, another root, another manifest) means other content, refused before a byte
 * of it is sent.
 */
export class NoNewContentTarget implements Target {
  readonly location: string;

  constructor(
    private readonly inner: Target,
    private readonly refusal: (blob?: Descriptor) => SplinterError,
  ) {
    this.location = inner.location;
  }

  fetch(desc: Descriptor, options?: FetchOptions): Promise<Readable> {
    return this.inner.fetch(desc, options);
  }

  exists(desc: Descriptor, options?: FetchOptions): Promise<boolean> {
    return this.inner.exists(desc, options);
  }

  async push(expected: Descriptor, content: Readable | Uint8Array, _options?: PushOptions): Promise<void> {
    if (!(content instanceof Uint8Array)) content.destroy();
    if (await this.inner.exists(expected)) return;
    throw this.refusal(expected);
  }

  resolve(reference: string, options?: FetchOptions): Promise<Descriptor> {
    return this.inner.resolve(reference, options);
  }

  tag(): Promise<void> {
    return Promise.reject(this.refusal());
  }

  referrers(subject: Descriptor, artifactType?: string, options?: FetchOptions): Promise<Descriptor[]> {
    return this.inner.referrers(subject, artifactType, options);
  }
}

/** The creation time (seconds) a manifest records, so a re-push can build the same manifest. */
export function createdSeconds(annotations: Record<string, string> | undefined): number | undefined {
  const created = annotations?.[Annotation.Created];
  const millis = created === undefined ? Number.NaN : Date.parse(created);
  return Number.isFinite(millis) ? Math.floor(millis / 1000) : undefined;
}

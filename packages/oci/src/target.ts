import type { Readable } from 'node:stream';
import type { Descriptor } from './descriptor.js';

export interface FetchOptions {
  signal?: AbortSignal;
}

export interface PushOptions {
  signal?: AbortSignal;
  /** Called with the number of bytes sent so far (for progress bars). */
  onProgress?: (bytesDone: number) => void;
  /**
   * The content stream already fails before it ends unless it matches `expected` (it comes out of a
   * VerifyingStream, e.g. a registry download): the store need not hash it a second time. Stores still
   * keep nothing from a stream that errors.
   */
  verifiedUpstream?: boolean;
}

/**
 * Content addressed by descriptor. Every store checks size and digest: `fetch` yields a stream that
 * errors with DIGEST_MISMATCH / SIZE_MISMATCH before it ends if the bytes are not what `desc` promises,
 * and `push` refuses content that does not match `expected` without keeping any of it.
 */
export interface ReadOnlyStorage {
  fetch(desc: Descriptor, options?: FetchOptions): Promise<Readable>;
  exists(desc: Descriptor, options?: FetchOptions): Promise<boolean>;
}

export interface Storage extends ReadOnlyStorage {
  push(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void>;
}

/** A Storage with names (tags) and the referrers graph: the one interface every store implements. */
export interface Target extends Storage {
  /** A tag or a `sha256:` digest to the descriptor of the manifest it names. NOT_FOUND if unknown. */
  resolve(reference: string, options?: FetchOptions): Promise<Descriptor>;
  /** Points `reference` (a tag) at the manifest `desc`, which must already be stored. */
  tag(desc: Descriptor, reference: string, options?: FetchOptions): Promise<void>;
  /** Manifests whose `subject` is `subject`, optionally only those of one artifact type. */
  referrers(subject: Descriptor, artifactType?: string, options?: FetchOptions): Promise<Descriptor[]>;
  /** Human-readable location, e.g. `oci-layout:/home/u/.splinter/store` or `localhost:5000/game/patches`. */
  readonly location: string;
}

/** Optional capability of registry targets: cross-repository blob mount within one registry. */
export interface Mountable {
  /** True if the blob was mounted from `fromRepository`; false if the registry declined. */
  mount(desc: Descriptor, fromRepository: string, options?: FetchOptions): Promise<boolean>;
  readonly registryHost: string;
  readonly repository: string;
}

export function isMountable(target: unknown): target is Mountable {
  return typeof (target as Partial<Mountable> | null)?.mount === 'function';
}

/**
 * Optional capability of stores whose existence check costs a round trip (a registry's HEAD): push a
 * blob the caller has just seen the store lack, without asking the store again.
 */
export interface AbsentPushable {
  pushAbsent(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void>;
}

function isAbsentPushable(target: unknown): target is AbsentPushable {
  return typeof (target as Partial<AbsentPushable> | null)?.pushAbsent === 'function';
}

/** Pushes a blob the caller has just seen `target` lack, skipping the store's own check where it can. */
export function pushAbsent(
  target: Storage,
  expected: Descriptor,
  content: Readable | Uint8Array,
  options?: PushOptions,
): Promise<void> {
  return isAbsentPushable(target)
    ? target.pushAbsent(expected, content, options)
    : target.push(expected, content, options);
}

/**
 * Optional capability of stores whose blob files a pull may hard-link into client trees (the OCI
 * layout): `pushPrivate` stores a copy no tree shares, even when the blob is held already, because the
 * store is about to become the content's home rather than a cache of it.
 */
export interface PrivateCopyable {
  pushPrivate(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void>;
  /** Whether the stored blob's file is also linked into a client tree. */
  isShared(desc: Pick<Descriptor, 'digest'>): Promise<boolean>;
}

/**
 * What `fetchRange` hands back. `range`: exactly the bytes [start, end) of the blob, nothing more or
 * less (the stream errors otherwise). `whole`: the store would not serve the range, so this is the
 * whole blob, digest-verified while it streams (a VerifyingStream), for the caller to take what it
 * needs and keep the rest.
 */
export type RangeRead = { kind: 'range'; stream: Readable } | { kind: 'whole'; stream: Readable };

/**
 * Optional capability: read part of a blob (not a manifest). `start` and `end` are byte offsets,
 * `end` exclusive, with 0 <= start < end <= desc.size; anything else is INVALID_ARGUMENT. An unknown
 * blob is BLOB_UNKNOWN. Range bytes are not digest-checked: the caller checks what it cuts out of them.
 */
export interface RangeReadable {
  fetchRange(desc: Descriptor, start: number, end: number, options?: FetchOptions): Promise<RangeRead>;
}

export function isRangeReadable(target: unknown): target is RangeReadable {
  return typeof (target as Partial<RangeReadable> | null)?.fetchRange === 'function';
}

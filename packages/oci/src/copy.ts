import type { Readable } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import type { Descriptor, Manifest } from './descriptor.js';
import { isManifestMediaType } from './descriptor.js';
import { parseManifest, successors } from './graph.js';
import { MAX_MANIFEST_BYTES } from './media-types.js';
import { readAllLimited } from './read-limited.js';
import { isMountable, type Target } from './target.js';

export type CopyEvent =
  /** A blob joined the copy: the bytes it adds to the work (done once it is sent, skipped or mounted). */
  | { type: 'planned'; bytes: number }
  | { type: 'bytes'; bytes: number }
  | { type: 'blob'; descriptor: Descriptor; outcome: 'copied' | 'skipped' | 'mounted' };

export interface CopyOptions {
  /** Blob transfers at once (default 4). */
  concurrency?: number;
  /** Repositories of the destination's registry that may already hold a blob (tried with a mount first). */
  mountFrom?: (desc: Descriptor) => string[];
  onProgress?: ((event: CopyEvent) => void) | undefined;
}

export interface CopyStats {
  /** Blobs (configs and layers) sent, skipped because the destination had them, and mounted. */
  copied: number;
  skipped: number;
  mounted: number;
  /** Manifests written (children before parents). */
  manifests: number;
  /** Bytes sent to the destination (blobs and manifests). */
  bytes: number;
}

export const DEFAULT_COPY_CONCURRENCY = 4;

/**
 * Where a BlobCopier reads a blob. `verified` says the stream already fails before it ends unless the
 * bytes match (every Target's fetch does), so the destination need not hash it again.
 */
export interface BlobSource {
  open(): Promise<Readable>;
  verified: boolean;
}

/**
 * Copies blobs into `dst` as they are handed to it, at most `concurrency` at a time: a blob the
 * destination has is skipped, else mounted from a repository that holds it, else streamed across.
 * copyGraph hands it a graph's blobs; push hands it each layer the moment it is packed, so uploads run
 * while the rest of the folder is still being packed; both end with `finish`, which writes the
 * manifests once every blob is there. The first failure stops new starts: `add` then throws it, and so
 * do `drain` and `finish`.
 */
export class BlobCopier {
  private readonly stats: CopyStats = { copied: 0, skipped: 0, mounted: 0, manifests: 0, bytes: 0 };
  private readonly queue: Array<{ blob: Descriptor; source: BlobSource }> = [];
  private readonly seen = new Set<string>();
  private readonly concurrency: number;
  private running = 0;
  private failure: { error: unknown } | undefined;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly dst: Target,
    private readonly options: CopyOptions = {},
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULT_COPY_CONCURRENCY);
  }

  /** Queues a blob (once per digest). */
  add(blob: Descriptor, source: BlobSource): void {
    if (this.failure) throw this.failure.error;
    if (this.seen.has(blob.digest)) return;
    this.seen.add(blob.digest);
    this.options.onProgress?.({ type: 'planned', bytes: blob.size });
    this.queue.push({ blob, source });
    this.startMore();
  }

  /** Starts nothing more (the caller failed): `drain` then waits only for the copies under way. */
  abandon(reason: unknown): void {
    this.failure ??= { error: reason };
    this.queue.length = 0;
  }

  /** Resolves once every queued blob is in the destination; rejects with the first failure. */
  async drain(): Promise<void> {
    while (this.running > 0 || (this.queue.length > 0 && !this.failure)) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.failure) throw this.failure.error;
  }

  /**
   * Drains, then pushes `manifests` in the order given (children first), skipping those the destination
   * has, and returns what the whole copy did.
   */
  async finish(manifests: Array<{ descriptor: Descriptor; bytes: Uint8Array }>): Promise<CopyStats> {
    await this.drain();
    for (const { descriptor, bytes } of manifests) {
      if (await this.dst.exists(descriptor)) continue;
      await this.dst.push(descriptor, bytes);
      this.stats.manifests += 1;
      this.stats.bytes += bytes.byteLength;
    }
    return { ...this.stats };
  }

  private startMore(): void {
    while (!this.failure && this.running < this.concurrency && this.queue.length > 0) {
      const { blob, source } = this.queue.shift()!;
      this.running += 1;
      this.copyOne(blob, source)
        .catch((error: unknown) => {
          this.failure ??= { error };
        })
        .finally(() => {
          this.running -= 1;
          this.startMore();
          const waiters = this.waiters;
          this.waiters = [];
          for (const wake of waiters) wake();
        });
    }
  }

  private async copyOne(blob: Descriptor, source: BlobSource): Promise<void> {
    const { dst, options } = this;
    if (await dst.exists(blob)) {
      this.stats.skipped += 1;
      options.onProgress?.({ type: 'bytes', bytes: blob.size });
      options.onProgress?.({ type: 'blob', descriptor: blob, outcome: 'skipped' });
      return;
    }
    if (isMountable(dst) && options.mountFrom) {
      for (const repository of options.mountFrom(blob)) {
        if (repository !== dst.repository && (await dst.mount(blob, repository))) {
          this.stats.mounted += 1;
          options.onProgress?.({ type: 'bytes', bytes: blob.size });
          options.onProgress?.({ type: 'blob', descriptor: blob, outcome: 'mounted' });
          return;
        }
      }
    }
    const stream = await source.open();
    let reported = 0;
    try {
      await dst.push(blob, stream, {
        verifiedUpstream: source.verified,
        absent: true,
        onProgress: (done) => {
          options.onProgress?.({ type: 'bytes', bytes: done - reported });
          reported = done;
        },
      });
    } catch (error) {
      // A refused upload may leave its source unread: close the file now, not at the next GC.
      stream.destroy();
      throw error;
    }
    if (reported < blob.size) options.onProgress?.({ type: 'bytes', bytes: blob.size - reported });
    this.stats.copied += 1;
    this.stats.bytes += blob.size;
    options.onProgress?.({ type: 'blob', descriptor: blob, outcome: 'copied' });
  }
}

/**
 * Copies the graph under `root` (manifests, configs, layers) from `src` to `dst`: children before
 * parents, the root last, so a destination never holds a manifest whose blobs are missing. Blobs the
 * destination has are skipped; the rest stream across, at most `concurrency` at a time.
 */
export async function copyGraph(
  src: Target,
  dst: Target,
  root: Descriptor,
  options: CopyOptions = {},
): Promise<CopyStats> {
  const manifests: Array<{ descriptor: Descriptor; bytes: Buffer }> = [];
  const blobs = new Map<string, Descriptor>();
  await collect(src, root, manifests, blobs, new Set());

  const copier = new BlobCopier(dst, options);
  for (const blob of blobs.values()) copier.add(blob, { open: () => src.fetch(blob), verified: true });
  // Manifests were collected parents first; push them children first.
  return copier.finish(manifests.reverse());
}

async function collect(
  src: Target,
  node: Descriptor,
  manifests: Array<{ descriptor: Descriptor; bytes: Buffer }>,
  blobs: Map<string, Descriptor>,
  visiting: Set<string>,
): Promise<void> {
  if (visiting.has(node.digest)) return;
  visiting.add(node.digest);
  const bytes = await fetchManifestBytes(src, node);
  const manifest: Manifest = parseManifest(bytes, node.mediaType);
  manifests.push({ descriptor: node, bytes });
  for (const child of successors(manifest)) {
    if (isManifestMediaType(child.mediaType)) {
      await collect(src, child, manifests, blobs, visiting);
    } else {
      blobs.set(child.digest, child);
    }
  }
}

export async function fetchManifestBytes(src: Target, desc: Descriptor): Promise<Buffer> {
  if (desc.size > MAX_MANIFEST_BYTES) {
    throw new SplinterError(
      'MANIFEST_TOO_LARGE',
      `manifest ${desc.digest} is ${desc.size} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
    );
  }
  return readAllLimited(await src.fetch(desc), MAX_MANIFEST_BYTES);
}

/** Runs `task` over `items` with at most `limit` in flight; the first failure stops new starts and is thrown. */
export async function runLimited<T>(
  items: T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await task(item);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure !== undefined) throw failure;
}

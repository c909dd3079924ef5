import type { Readable } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import type { Descriptor, Manifest } from './descriptor.js';
import { isManifestMediaType } from './descriptor.js';
import { parseManifest, successors } from './graph.js';
import { MAX_MANIFEST_BYTES } from './media-types.js';
import { readAllLimited } from './read-limited.js';
import { isMountable, pushAbsent, type Target } from './target.js';
import {
  abortable,
  emptyTransferStats,
  interruptedError,
  type ProgressListener,
  type TransferStats,
  throwIfAborted,
} from './transfer.js';

export interface CopyOptions {
  /** Blob transfers at once (default 4). */
  concurrency?: number;
  /** Repositories of the destination's registry that may already hold a blob (tried with a mount first). */
  mountFrom?: (desc: Descriptor) => string[];
  onProgress?: ProgressListener | undefined;
  /**
   * Stops the copy: nothing new starts, the transfers under way are cut short (their streams destroyed,
   * the signal passed on to the stores), and the copy rejects with INTERRUPTED once they have settled.
   * A store keeps nothing of a blob cut short, and no manifest is written after the abort.
   */
  signal?: AbortSignal | undefined;
}

/** A copy's TransferStats, with the manifests it wrote (children before parents). */
export interface CopyStats extends TransferStats {
  manifests: number;
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
  private readonly stats: CopyStats = { ...emptyTransferStats(), manifests: 0 };
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
    this.noteAbort();
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
    this.noteAbort();
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
    const signal = this.options.signal;
    for (const { descriptor, bytes } of manifests) {
      throwIfAborted(signal);
      if (await abortable(signal, () => this.dst.exists(descriptor, { signal }))) continue;
      await abortable(signal, () => this.dst.push(descriptor, bytes, { signal }));
      this.stats.manifests += 1;
      this.stats.bytes += bytes.byteLength;
      this.stats.requests += 1;
    }
    return { ...this.stats };
  }

  /** An aborted signal stops new starts, as a failure does. */
  private noteAbort(): void {
    if (this.options.signal?.aborted) this.abandon(interruptedError(this.options.signal));
  }

  private startMore(): void {
    this.noteAbort();
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
    const { dst, options, stats } = this;
    const signal = options.signal;
    const settled = (outcome: 'reused' | 'mounted') => {
      if (outcome === 'reused') stats.reused += 1;
      else stats.mounted += 1;
      stats.reusedBytes += blob.size;
      options.onProgress?.({ type: 'bytes', bytes: blob.size });
      options.onProgress?.({ type: 'item', outcome, bytes: blob.size, digest: blob.digest });
    };
    if (await abortable(signal, () => dst.exists(blob, { signal }))) return settled('reused');
    if (isMountable(dst) && options.mountFrom) {
      for (const repository of options.mountFrom(blob)) {
        if (repository === dst.repository) continue;
        stats.requests += 1;
        if (await abortable(signal, () => dst.mount(blob, repository, { signal }))) return settled('mounted');
      }
    }
    let stream: Readable | undefined;
    let reported = 0;
    stats.requests += 1;
    await abortable(
      signal,
      async () => {
        stream = await source.open();
        try {
          throwIfAborted(signal);
          await pushAbsent(dst, blob, stream, {
            verifiedUpstream: source.verified,
            signal,
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
      },
      // Cut short: the store sees its content fail and keeps nothing of it.
      (error) => stream?.destroy(error),
    );
    if (reported < blob.size) options.onProgress?.({ type: 'bytes', bytes: blob.size - reported });
    stats.transferred += 1;
    stats.bytes += blob.size;
    options.onProgress?.({ type: 'item', outcome: 'transferred', bytes: blob.size, digest: blob.digest });
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
  const signal = options.signal;
  await abortable(signal, () => collect(src, root, manifests, blobs, new Set(), signal));

  const copier = new BlobCopier(dst, options);
  for (const blob of blobs.values())
    copier.add(blob, { open: () => src.fetch(blob, signal ? { signal } : undefined), verified: true });
  // Manifests were collected parents first; push them children first.
  return copier.finish(manifests.reverse());
}

async function collect(
  src: Target,
  node: Descriptor,
  manifests: Array<{ descriptor: Descriptor; bytes: Buffer }>,
  blobs: Map<string, Descriptor>,
  visiting: Set<string>,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (visiting.has(node.digest)) return;
  visiting.add(node.digest);
  throwIfAborted(signal);
  const bytes = await fetchManifestBytes(src, node, signal);
  const manifest: Manifest = parseManifest(bytes, node.mediaType);
  manifests.push({ descriptor: node, bytes });
  for (const child of successors(manifest)) {
    if (isManifestMediaType(child.mediaType)) {
      await collect(src, child, manifests, blobs, visiting, signal);
    } else {
      blobs.set(child.digest, child);
    }
  }
}

export async function fetchManifestBytes(
  src: Target,
  desc: Descriptor,
  signal?: AbortSignal | undefined,
): Promise<Buffer> {
  if (desc.size > MAX_MANIFEST_BYTES) {
    throw new SplinterError(
      'MANIFEST_TOO_LARGE',
      `manifest ${desc.digest} is ${desc.size} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`,
    );
  }
  return readAllLimited(await src.fetch(desc, signal ? { signal } : undefined), MAX_MANIFEST_BYTES);
}

/**
 * Runs `task` over `items` with at most `limit` in flight; the first failure stops new starts and is
 * thrown. An aborted `signal` stops new starts too (INTERRUPTED once the tasks under way settle).
 */
export async function runLimited<T>(
  items: T[],
  limit: number,
  task: (item: T) => Promise<void>,
  signal?: AbortSignal | undefined,
): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      if (signal?.aborted) {
        failure ??= interruptedError(signal);
        break;
      }
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

import { SplinterError } from '@splinter/errors';
import type { Descriptor, Manifest } from './descriptor.js';
import { isManifestMediaType } from './descriptor.js';
import { readAllLimited } from './digest.js';
import { parseManifest, successors } from './graph.js';
import { MAX_MANIFEST_BYTES } from './media-types.js';
import { isMountable, type Target } from './target.js';

export type CopyEvent =
  | { type: 'start'; totalBytes: number; blobs: number }
  | { type: 'bytes'; bytes: number }
  | { type: 'blob'; descriptor: Descriptor; outcome: 'copied' | 'skipped' | 'mounted' };

export interface CopyOptions {
  /** Blob transfers at once (default 4). */
  concurrency?: number;
  /** Repositories of the destination's registry that may already hold a blob (tried with a mount first). */
  mountFrom?: (desc: Descriptor) => string[];
  onProgress?: ((event: CopyEvent) => void) | undefined;
  signal?: AbortSignal;
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
  const stats: CopyStats = { copied: 0, skipped: 0, mounted: 0, manifests: 0, bytes: 0 };
  const manifests: Array<{ descriptor: Descriptor; bytes: Buffer }> = [];
  const blobs = new Map<string, Descriptor>();
  await collect(src, root, manifests, blobs, new Set());

  const missing: Descriptor[] = [];
  await runLimited([...blobs.values()], options.concurrency ?? DEFAULT_COPY_CONCURRENCY, async (blob) => {
    if (await dst.exists(blob)) {
      stats.skipped += 1;
      options.onProgress?.({ type: 'blob', descriptor: blob, outcome: 'skipped' });
    } else {
      missing.push(blob);
    }
  });
  const totalBytes = missing.reduce((sum, d) => sum + d.size, 0);
  options.onProgress?.({ type: 'start', totalBytes, blobs: missing.length });

  await runLimited(missing, options.concurrency ?? DEFAULT_COPY_CONCURRENCY, async (blob) => {
    if (isMountable(dst) && options.mountFrom) {
      for (const repository of options.mountFrom(blob)) {
        if (repository !== dst.repository && (await dst.mount(blob, repository))) {
          stats.mounted += 1;
          options.onProgress?.({ type: 'bytes', bytes: blob.size });
          options.onProgress?.({ type: 'blob', descriptor: blob, outcome: 'mounted' });
          return;
        }
      }
    }
    const stream = await src.fetch(blob);
    let reported = 0;
    await dst.push(blob, stream, {
      // Every Target's fetch stream fails before it ends unless the bytes match: no second hash.
      verifiedUpstream: true,
      onProgress: (done) => {
        options.onProgress?.({ type: 'bytes', bytes: done - reported });
        reported = done;
      },
    });
    if (reported < blob.size) options.onProgress?.({ type: 'bytes', bytes: blob.size - reported });
    stats.copied += 1;
    stats.bytes += blob.size;
    options.onProgress?.({ type: 'blob', descriptor: blob, outcome: 'copied' });
  });

  // Manifests were collected parents first; push them children first.
  for (const { descriptor, bytes } of manifests.reverse()) {
    if (await dst.exists(descriptor)) continue;
    await dst.push(descriptor, bytes);
    stats.manifests += 1;
    stats.bytes += bytes.byteLength;
  }
  return stats;
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

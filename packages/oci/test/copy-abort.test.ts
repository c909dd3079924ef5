import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isSplinterError } from '@splintertree/errors';
import {
  copyGraph,
  type Descriptor,
  descriptorFor,
  type FetchOptions,
  MediaType,
  MemoryTarget,
  OciLayoutTarget,
  type ProgressEvent,
  type Target,
} from '@splintertree/oci';
import { afterEach, describe, expect, it } from 'vitest';

const LAYER_BYTES = 256 * 1024;

/** A graph of one manifest, an empty config and three layers, in a memory store. */
async function sourceGraph(): Promise<{ src: MemoryTarget; root: Descriptor; layers: Descriptor[] }> {
  const src = new MemoryTarget();
  const config = descriptorFor(MediaType.Empty, Buffer.from('{}'));
  await src.push(config, Buffer.from('{}'));
  const layers: Descriptor[] = [];
  for (let i = 0; i < 3; i += 1) {
    const bytes = randomBytes(LAYER_BYTES);
    const layer = descriptorFor('application/octet-stream', bytes);
    await src.push(layer, bytes);
    layers.push(layer);
  }
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      artifactType: 'application/vnd.test',
      config,
      layers,
    }),
  );
  const root = descriptorFor(MediaType.ImageManifest, manifestBytes);
  await src.push(root, manifestBytes);
  return { src, root, layers };
}

/**
 * The source store, except that `stalled` streams its first 64 KiB and then nothing more (a registry
 * that stops answering) until the stream is destroyed. `reading` resolves once those bytes are out.
 */
function stallingSource(inner: MemoryTarget, stalled: Descriptor) {
  let started: () => void = () => undefined;
  const reading = new Promise<void>((resolve) => {
    started = resolve;
  });
  const signals: Array<AbortSignal | undefined> = [];
  const target: Target = {
    location: 'stalling',
    exists: (desc) => inner.exists(desc),
    resolve: (reference) => inner.resolve(reference),
    tag: (desc, reference) => inner.tag(desc, reference),
    referrers: (subject, type) => inner.referrers(subject, type),
    push: (desc, content) => inner.push(desc, content),
    async fetch(desc: Descriptor, options?: FetchOptions) {
      signals.push(options?.signal);
      if (desc.digest !== stalled.digest) return inner.fetch(desc);
      let sent = false;
      return new Readable({
        read() {
          if (sent) return;
          sent = true;
          this.push(randomBytes(64 * 1024));
          started();
        },
      });
    },
  };
  return { target, reading, signals };
}

describe('copyGraph stops when its AbortSignal aborts', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });
  const layout = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'copy-abort-'));
    dirs.push(dir);
    return { dir, dst: await OciLayoutTarget.open(dir) };
  };

  it('mid-copy: rejects with INTERRUPTED, keeps no partial blob, starts nothing more, writes no manifest', async () => {
    const { src, root, layers } = await sourceGraph();
    const { target, reading, signals } = stallingSource(src, layers[1]!);
    const { dir, dst } = await layout();
    const controller = new AbortController();
    const events: ProgressEvent[] = [];
    const copy = copyGraph(target, dst, root, {
      concurrency: 1,
      signal: controller.signal,
      onProgress: (event) => events.push(event),
    });
    const outcome = copy.then(
      () => undefined,
      (error: unknown) => error,
    );
    await reading;
    // The stalled blob is being written into the layout's ingest folder when the abort comes.
    controller.abort();
    const error = await outcome;
    expect(isSplinterError(error, 'INTERRUPTED'), String(error)).toBe(true);

    expect(await dst.exists(layers[1]!)).toBe(false);
    expect(await readdir(join(dir, 'ingest'))).toEqual([]);
    // Concurrency 1: the layer queued after the stalled one never started.
    expect(await dst.exists(layers[2]!)).toBe(false);
    expect(await dst.exists(root)).toBe(false);
    await expect(dst.resolve(root.digest)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // The signal went to the source with every read, so a store that honours it stops too.
    expect(signals.length).toBeGreaterThan(0);
    expect(signals.every((s) => s === controller.signal)).toBe(true);
    const settled = events.flatMap((e) => (e.type === 'item' ? [e.digest] : []));
    expect(settled).not.toContain(layers[1]!.digest);
  });

  it('already aborted: rejects with INTERRUPTED and reads nothing', async () => {
    const { src, root, layers } = await sourceGraph();
    const { target, signals } = stallingSource(src, layers[0]!);
    const dst = new MemoryTarget();
    const controller = new AbortController();
    controller.abort();
    await expect(copyGraph(target, dst, root, { signal: controller.signal })).rejects.toMatchObject({
      code: 'INTERRUPTED',
    });
    expect(signals).toEqual([]);
    for (const layer of layers) expect(await dst.exists(layer)).toBe(false);
  });

  it('counts what it did in the shared vocabulary: a second copy reuses every blob', async () => {
    const { src, root } = await sourceGraph();
    const dst = new MemoryTarget();
    const first = await copyGraph(src, dst, root);
    expect(first).toMatchObject({ transferred: 4, reused: 0, mounted: 0, manifests: 1, requests: 5 });
    expect(first.bytes).toBe(3 * LAYER_BYTES + 2 + root.size);
    const again = await copyGraph(src, dst, root);
    expect(again).toMatchObject({ transferred: 0, reused: 4, bytes: 0, reusedBytes: 3 * LAYER_BYTES + 2 });
  });
});

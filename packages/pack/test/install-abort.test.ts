import { randomBytes } from 'node:crypto';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { isSplinterError } from '@splintertree/errors';
import { type Descriptor, type FetchOptions, OciLayoutTarget, type RangeRead } from '@splintertree/oci';
import { type BaseVersion, fetchRecords, type IndexEntry, installTree, PackCache } from '@splintertree/pack';
import { describe, expect, it } from 'vitest';
import { makeTree, publishInto, snapshot, tempDir } from './helpers.js';

const MIB = 1024 * 1024;

/**
 * A store whose ranged reads of `stalled` send 64 KiB and then nothing (a registry that stops
 * answering) until destroyed; `reading` resolves once those bytes are out. Every call's signal is kept.
 */
function stallingRanges(store: OciLayoutTarget, stalled: () => string | undefined) {
  let started: () => void = () => undefined;
  const reading = new Promise<void>((resolve) => {
    started = resolve;
  });
  const signals: Array<AbortSignal | undefined> = [];
  const remote = Object.assign(Object.create(store) as OciLayoutTarget, {
    async fetchRange(
      desc: Descriptor,
      start: number,
      end: number,
      options?: FetchOptions,
    ): Promise<RangeRead> {
      signals.push(options?.signal);
      if (desc.digest !== stalled()) return store.fetchRange(desc, start, end);
      let sent = false;
      const stream = new Readable({
        read() {
          if (sent) return;
          sent = true;
          this.push(randomBytes(Math.min(64 * 1024, end - start - 1)));
          started();
        },
      });
      return { kind: 'range', stream };
    },
  });
  return { remote, reading, signals };
}

/** Names beside the output that an install leaves while under way (staging, old tree, lock). */
async function besideOutput(output: string): Promise<string[]> {
  return (await readdir(dirname(output))).filter((name) => name.startsWith('.splinter-'));
}

async function installedV1() {
  const store = await OciLayoutTarget.open(await tempDir('store'));
  const cache = new PackCache(await tempDir('packs'));
  const tree = await tempDir('tree');
  await makeTree(tree, { largeBytes: 2 * MIB, smallFiles: 12 });
  const v1 = await publishInto(store, cache, tree);
  const output = join(await tempDir('out'), 'game');
  const options = (version: BaseVersion, previous?: IndexEntry[]) => ({
    root: version.root,
    entries: version.entries,
    keys: new Map(),
    cache,
    remote: store,
    output,
    replace: true,
    previous: previous ? { entries: previous, installedAt: Date.now() } : undefined,
    concurrency: 1,
  });
  await installTree(options(v1));
  // The next version changes the large file and every small one: new records in a new pack.
  await writeFile(join(tree, 'data', 'big.pak'), randomBytes(2 * MIB));
  for (const name of await readdir(join(tree, 'data', 'maps')))
    await writeFile(join(tree, 'data', 'maps', name), randomBytes(300));
  const v2 = await publishInto(store, cache, tree, { base: { root: v1.root, entries: v1.entries } });
  return { store, cache, tree, output, v1, v2, options };
}

describe('an aborted fetch or install leaves the installed tree and the cache as they were', () => {
  it('abort mid-download: INTERRUPTED, the range is not listed, the previous install is byte-identical', async () => {
    const { store, cache, tree, output, v1, v2, options } = await installedV1();
    const before = await snapshot(output);
    const bigBefore = await stat(join(output, 'data', 'big.pak'));
    const newPack = v2.root.packs.find((p) => !v1.root.packs.some((q) => q.digest === p.digest));
    expect(newPack).toBeDefined();
    const { remote, reading, signals } = stallingRanges(store, () => newPack?.digest);
    const controller = new AbortController();
    const install = installTree({
      ...options(v2, v1.entries),
      remote,
      signal: controller.signal,
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    await reading;
    controller.abort();
    const error = await install;
    expect(isSplinterError(error, 'INTERRUPTED'), String(error)).toBe(true);

    expect(await snapshot(output)).toEqual(before);
    expect((await stat(join(output, 'data', 'big.pak'))).ino).toBe(bigBefore.ino);
    expect(await besideOutput(output)).toEqual([]);
    expect(signals.length).toBeGreaterThan(0);
    // Each request was given a signal that the caller's abort aborted (the install's own, derived from it).
    expect(signals.every((s) => s?.aborted === true)).toBe(true);
    // Nothing cut short is listed: the records of the new pack are still missing, and no temporary stays.
    const missing = v2.entries.flatMap((e) =>
      e.type === 'file' ? e.chunks.filter((c) => c.pack === newPack!.number) : [],
    );
    expect(missing.length).toBeGreaterThan(0);
    const cached = await Promise.all(
      missing.map((ref) => cache.has(newPack!.digest, ref.offset, ref.offset + ref.storedLength)),
    );
    expect(cached.every((held) => !held)).toBe(true);
    expect((await readdir(cache.dir)).filter((name) => name.includes('.tmp-'))).toEqual([]);

    // The cache still serves the next run, which installs v2 in full.
    const done = await installTree(options(v2, v1.entries));
    expect(done.fetch.transferred).toBeGreaterThan(0);
    expect(await snapshot(output)).toEqual(await snapshot(tree));
  });

  it('abort between files: INTERRUPTED, the staging tree is discarded, nothing is renamed', async () => {
    const { cache, output, v1, v2, options } = await installedV1();
    // Every record v2 needs is cached first: the abort comes while files are being rebuilt.
    const fetched = await fetchRecords(
      v2.entries.flatMap((e) => (e.type === 'file' ? e.chunks : [])),
      { ...options(v2), packs: new Map(v2.root.packs.map((p) => [p.number, p])) },
    );
    expect(fetched.transferred).toBeGreaterThan(0);
    const before = await snapshot(output);
    const controller = new AbortController();
    // The first record read for a file aborts: that file is under way, the others are not started.
    const read: string[] = [];
    const aborting = Object.assign(Object.create(cache) as PackCache, {
      readRecord: (...args: Parameters<PackCache['readRecord']>) => {
        if (read.length === 0) controller.abort();
        read.push(`${args[0]}:${args[1]}`);
        return cache.readRecord(...args);
      },
    });
    const renames: string[] = [];
    const error = await installTree({
      ...options(v2, v1.entries),
      cache: aborting,
      signal: controller.signal,
      rename: async (from) => {
        renames.push(from);
      },
    }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(isSplinterError(error, 'INTERRUPTED'), String(error)).toBe(true);
    expect(renames).toEqual([]);
    expect(await snapshot(output)).toEqual(before);
    expect(await besideOutput(output)).toEqual([]);
    // Concurrency 1: the file under way finished, and no other file was started.
    const digestOf = new Map(v2.root.packs.map((p) => [p.number, p.digest]));
    const filesRead = v2.entries.filter(
      (e) => e.type === 'file' && e.chunks.some((c) => read.includes(`${digestOf.get(c.pack)}:${c.offset}`)),
    );
    expect(filesRead).toHaveLength(1);
  });

  it('a fetch aborted before it starts requests nothing, and counts cached records as reused', async () => {
    const { store, cache, v1, v2 } = await installedV1();
    const refs = v2.entries.flatMap((e) => (e.type === 'file' ? e.chunks : []));
    const packs = new Map(v2.root.packs.map((p) => [p.number, p]));
    const { remote, signals } = stallingRanges(store, () => undefined);
    const controller = new AbortController();
    controller.abort();
    await expect(
      fetchRecords(refs, { cache, remote, packs, concurrency: 2, signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'INTERRUPTED' });
    expect(signals).toEqual([]);
    const v1Refs = v1.entries.flatMap((e) => (e.type === 'file' ? e.chunks : []));
    const again = await fetchRecords(v1Refs, {
      cache,
      remote,
      packs: new Map(v1.root.packs.map((p) => [p.number, p])),
      concurrency: 2,
    });
    expect(again).toMatchObject({ transferred: 0, requests: 0, bytes: 0, mounted: 0 });
    expect(again.reused).toBe(new Set(v1Refs.map((r) => `${r.pack}:${r.offset}`)).size);
    expect(again.reusedBytes).toBeGreaterThan(0);
  });
});

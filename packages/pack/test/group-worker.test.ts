import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSplinterError, SplinterError } from '@splinter/errors';
import { finalizeTree, unpackLayer } from '@splinter/pack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Entry, file, groupLayer, makeTree, packToMemory, snapshot, tarOf, tempDir } from './helpers.js';

/** Yields `bytes` in 64 KiB chunks, counting what was read; fails with `failAfter`'s error past it. */
function countingSource(bytes: Buffer, failAfter?: { bytes: number; error: Error }) {
  const read = { bytes: 0 };
  async function* chunks() {
    for (let offset = 0; offset < bytes.byteLength; offset += 64 * 1024) {
      if (failAfter && offset >= failAfter.bytes) throw failAfter.error;
      const chunk = bytes.subarray(offset, offset + 64 * 1024);
      read.bytes += chunk.byteLength;
      yield chunk;
    }
  }
  return { stream: Readable.from(chunks(), { objectMode: false }), read };
}

const smallFiles = (count: number, size: number): Entry[] =>
  Array.from({ length: count }, (_, index) => file(`g/d${index % 7}/f-${index}`, randomBytes(size)));

describe('groups unpack on a worker thread', () => {
  let work: string;
  beforeAll(async () => {
    work = await tempDir('group-worker');
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function freshStaging(name: string): Promise<string> {
    const staging = join(work, name);
    await mkdir(staging);
    return staging;
  }

  it('unpacks many groups at once into one tree, sharing folders, exactly as packed', async () => {
    const root = join(work, 'tree');
    await makeTree(root, { smallFiles: 600, largeBytes: 1024 });
    const layers = await packToMemory(root, { averageGroupEntries: 8 });
    expect(layers.filter((layer) => layer.plan.kind === 'group').length).toBeGreaterThan(20);
    const staging = await freshStaging('many');
    const results = await Promise.all(
      layers.map((layer) => unpackLayer(layer.descriptor, Readable.from([layer.bytes]), staging)),
    );
    expect(results.reduce((sum, result) => sum + result.files, 0)).toBe(602); // 600 maps, the game and big.pak; the symlink is not a file
    const output = join(work, 'many-out');
    await finalizeTree(staging, output);
    expect(await snapshot(output)).toEqual(await snapshot(root));
  });

  it('takes a chunk several times the ring, splitting it and waiting for room', async () => {
    const bodies = [randomBytes(3 * 1024 * 1024), randomBytes(2 * 1024 * 1024 + 17)];
    const { bytes, descriptor } = groupLayer(
      await tarOf([file('g/one.bin', bodies[0]), file('g/sub/two.bin', bodies[1])]),
    );
    const staging = await freshStaging('one-chunk');
    const result = await unpackLayer(descriptor, Readable.from([bytes]), staging);
    expect(result).toEqual({ files: 2, bytes: bodies[0]!.byteLength + bodies[1]!.byteLength });
    // Buffer.equals: toEqual walks megabytes byte by byte, for seconds.
    expect((await readFile(join(staging, 'one.bin'))).equals(bodies[0]!)).toBe(true);
    expect((await readFile(join(staging, 'sub', 'two.bin'))).equals(bodies[1]!)).toBe(true);
  });

  it('stops reading the layer at the first refused entry, having read at most the ring ahead', async () => {
    const { bytes, descriptor } = groupLayer(
      await tarOf([file('g/first'), file('g/../evil'), file('g/big', randomBytes(32 * 1024 * 1024))]),
    );
    const source = countingSource(bytes);
    const staging = await freshStaging('refused');
    const error = await unpackLayer(descriptor, source.stream, staging).catch((e: unknown) => e);
    expect((error as SplinterError).code).toBe('UNSAFE_PATH');
    // The 1 MiB ring shared with the worker, the chunk waiting for room and the stream's buffer, of 32 MiB.
    expect(source.read.bytes).toBeLessThan(3 * 1024 * 1024);
    expect(Object.keys(await snapshot(staging))).toEqual(['first']);
  });

  it("fails with the source's own error and writes nothing once unpackLayer has settled", async () => {
    const { bytes, descriptor } = groupLayer(await tarOf(smallFiles(6000, 2048)));
    expect(bytes.byteLength).toBeGreaterThan(11 * 1024 * 1024);
    // 10 MiB in, the worker has written some files and has up to a ring's worth (1 MiB) still to go.
    const broken = new SplinterError('DIGEST_MISMATCH', 'the download does not match its digest');
    const source = countingSource(bytes, { bytes: 10 * 1024 * 1024, error: broken });
    const staging = await freshStaging('broken');
    const error = await unpackLayer(descriptor, source.stream, staging).catch((e: unknown) => e);
    expect(error).toBe(broken);
    // Listed at once: the worker had up to 1 MiB of the group still to inflate when the source broke.
    const settled = (await readdir(staging, { recursive: true })).sort();
    expect(settled.length).toBeGreaterThan(7);
    expect(settled.length).toBeLessThan(6000 + 7);
    await sleep(300);
    expect((await readdir(staging, { recursive: true })).sort()).toEqual(settled);
  });

  it('passes a system error across the thread with its code, in one line', async () => {
    const { bytes, descriptor } = groupLayer(await tarOf([file('g/sub/a')]));
    const missing = join(work, 'no-such-staging');
    const error = await unpackLayer(descriptor, Readable.from([bytes]), missing).catch((e: unknown) => e);
    expect(isSplinterError(error)).toBe(false);
    expect((error as NodeJS.ErrnoException).code).toBe('ENOENT');
    expect((error as Error).message).toContain('no-such-staging');
    expect((error as Error).message).not.toContain('\n');
  });
});

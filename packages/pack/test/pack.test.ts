import { mkdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { finalizeTree, unpackLayer } from '@splinter/pack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTree, packToMemory, snapshot, streamOf, tempDir } from './helpers.js';

describe('pack and unpack', () => {
  let root: string;
  let work: string;
  beforeAll(async () => {
    work = await tempDir('pack');
    root = join(work, 'tree');
    await makeTree(root);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('round-trips files, folders, empty folders, executable bits and symlinks exactly', async () => {
    const layers = await packToMemory(root);
    expect(layers.filter((l) => l.plan.kind === 'file').map((l) => l.plan.title)).toEqual(['data/big.pak']);
    const staging = join(work, 'staging-roundtrip');
    await mkdir(staging);
    let files = 0;
    for (const layer of layers)
      files += (await unpackLayer(layer.descriptor, streamOf(layer.bytes), staging)).files;
    const output = join(work, 'out-roundtrip');
    await finalizeTree(staging, output);
    expect(await snapshot(output)).toEqual(await snapshot(root));
    expect(files).toBe(42);
  });

  it('gives byte-identical layers for the same tree, whatever the mtimes', async () => {
    const first = await packToMemory(root);
    await utimes(join(root, 'data', 'maps', 'map-001.dat'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    const second = await packToMemory(root);
    expect(second.map((l) => l.descriptor)).toEqual(first.map((l) => l.descriptor));
  });

  it('changes only the group holding an edited file, and few groups when a file is added', async () => {
    const tree = join(work, 'churn');
    await makeTree(tree, { smallFiles: 400, largeBytes: 10 });
    const before = await packToMemory(tree, { averageGroupEntries: 16 });
    expect(before.length).toBeGreaterThan(8);
    await writeFile(join(tree, 'data', 'maps', 'map-200.dat'), 'edited');
    const edited = await packToMemory(tree, { averageGroupEntries: 16 });
    const changed = (a: typeof before, b: typeof before) => {
      const old = new Set(a.map((l) => l.descriptor.digest));
      return b.filter((l) => !old.has(l.descriptor.digest)).length;
    };
    expect(changed(before, edited)).toBe(1);
    await writeFile(join(tree, 'data', 'maps', 'map-200a.dat'), 'added');
    const added = await packToMemory(tree, { averageGroupEntries: 16 });
    expect(changed(edited, added)).toBeLessThanOrEqual(2);
  });

  it('keeps the manifest of a 100,000-file tree well under 4 MiB', async () => {
    const tree = join(work, 'many');
    for (let d = 0; d < 100; d++) {
      const dir = join(tree, `dir-${d}`);
      await mkdir(dir, { recursive: true });
      await Promise.all(Array.from({ length: 1000 }, (_, f) => writeFile(join(dir, `f-${f}`), `${d}/${f}`)));
    }
    const { planLayers } = await import('@splinter/pack');
    const plans = await planLayers(tree);
    const files = plans.reduce((sum, p) => sum + p.files, 0);
    expect(files).toBe(100_000);
    // Layer descriptors with the annotations a group carries (title, two ORAS keys, size): ~330 bytes.
    const descriptors = plans.map((p) => ({
      mediaType: p.mediaType,
      digest: `sha256:${'0'.repeat(64)}`,
      size: 123456,
      annotations: {
        ...p.annotations,
        'io.deis.oras.content.digest': `sha256:${'0'.repeat(64)}`,
        'dev.splintertree.content.size': '1234567',
      },
    }));
    expect(JSON.stringify(descriptors).length).toBeLessThan(1024 * 1024);
  }, 120_000);

  it('refuses to replace a non-empty output unless asked, and replaces it atomically when asked', async () => {
    const output = join(work, 'existing');
    await mkdir(output);
    await writeFile(join(output, 'keep.txt'), 'old');
    const staging = join(work, 'staging-replace');
    await mkdir(staging);
    await writeFile(join(staging, 'new.txt'), 'new');
    await expect(finalizeTree(staging, output)).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
    expect(await snapshot(output)).toEqual({ 'keep.txt': expect.stringMatching(/^file 644/) });
    await finalizeTree(staging, output, { replace: true });
    expect(Object.keys(await snapshot(output))).toEqual(['new.txt']);
  });
});

import { link, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { descriptorFor, MediaType, OciLayoutTarget, readAllLimited } from '@splintertree/oci';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

describe('OCI layout private copies (PrivateCopyable)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splinter-private-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('push keeps a blob a tree shares; pushPrivate stores a copy no tree shares', async () => {
    const store = await OciLayoutTarget.open(join(dir, 'store'));
    const bytes = Buffer.from('layer bytes a pull linked into a tree\n');
    const blob = descriptorFor(MediaType.LayerTar, bytes);
    await store.push(blob, bytes);
    // A pull hard-links the blob into a client tree.
    const inTree = join(dir, 'tree-file');
    await link(store.blobFile(blob), inTree);
    expect(await store.isShared(blob)).toBe(true);

    await store.push(blob, bytes);
    expect(await store.isShared(blob)).toBe(true);

    await store.pushPrivate(blob, bytes);
    expect(await store.isShared(blob)).toBe(false);
    expect((await stat(inTree)).ino).not.toBe((await stat(store.blobFile(blob))).ino);
    // Editing the tree's file no longer reaches the store.
    await writeFile(inTree, 'edited through the tree\n');
    expect(await readAllLimited(await store.fetch(blob), 1024)).toEqual(bytes);
    expect(await readFile(inTree, 'utf8')).toBe('edited through the tree\n');
  });
});

import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSplinterError } from '@splintertree/errors';
import { OciLayoutTarget } from '@splintertree/oci';
import { installTree, PackCache } from '@splintertree/pack';
import { describe, expect, it } from 'vitest';
import { publishInto, tempDir } from './helpers.js';

describe('file-system refusals get their own code and one line', () => {
  it('a name longer than the file system takes is NAME_TOO_LONG, naming the path; nothing is left', async () => {
    const store = await OciLayoutTarget.open(await tempDir('store'));
    const tree = await tempDir('tree');
    await writeFile(join(tree, 'short.txt'), 'a');
    const cache = new PackCache(await tempDir('packs'));
    const { published, entries } = await publishInto(store, cache, tree);
    // A hostile index: 300 bytes in one name (ext4, APFS and NTFS stop at 255).
    const long = 'n'.repeat(300);
    const hostile = entries.map((entry) => (entry.path === 'short.txt' ? { ...entry, path: long } : entry));
    const parent = await tempDir('out');
    const error = await installTree({
      root: published.root,
      entries: hostile,
      keys: new Map(),
      cache,
      remote: store,
      output: join(parent, 'game'),
      replace: false,
      concurrency: 4,
    }).catch((e: unknown) => e);
    expect(isSplinterError(error) && error.code).toBe('NAME_TOO_LONG');
    expect((error as Error).message).toBe(`${long}: a name is too long for this file system (ENAMETOOLONG)`);
    expect(await readdir(parent)).toEqual([]);
  });

  it('off Linux, a tree that claims to be portable is checked: aux.txt is UNPORTABLE_PATH', async () => {
    const store = await OciLayoutTarget.open(await tempDir('store'));
    const tree = await tempDir('tree');
    await writeFile(join(tree, 'short.txt'), 'a');
    const cache = new PackCache(await tempDir('packs'));
    const { published, entries } = await publishInto(store, cache, tree);
    const hostile = entries.map((entry) =>
      entry.path === 'short.txt' ? { ...entry, path: 'aux.txt' } : entry,
    );
    const parent = await tempDir('out');
    const install = (platform: NodeJS.Platform) =>
      installTree({
        root: published.root,
        entries: hostile,
        keys: new Map(),
        cache,
        remote: store,
        output: join(parent, platform),
        replace: false,
        concurrency: 2,
        platform,
      });
    const error = await install('win32').catch((e: unknown) => e);
    expect(isSplinterError(error) && error.code).toBe('UNPORTABLE_PATH');
    expect((error as Error).message).toMatch(/aux\.txt/);
    await install('linux');
    expect(await readdir(parent)).toEqual(['linux']);
  });
});

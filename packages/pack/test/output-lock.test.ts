import { spawnSync } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OciLayoutTarget } from '@splintertree/oci';
import { installTree, PackCache, recoverOutput } from '@splintertree/pack';
import { describe, expect, it } from 'vitest';
import { makeTree, publishInto, snapshot, tempDir } from './helpers.js';

/** The id of a process that has exited. */
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

describe('the install lock beside an output', () => {
  it('is taken over from an install that was killed holding it, and released after', async () => {
    const store = await OciLayoutTarget.open(await tempDir('lock-store'));
    const cache = new PackCache(await tempDir('lock-packs'));
    const tree = await tempDir('lock-tree');
    await makeTree(tree, { largeBytes: 64 * 1024, smallFiles: 3 });
    const version = await publishInto(store, cache, tree);
    const parent = await tempDir('lock-out');
    const output = join(parent, 'game');
    await writeFile(join(parent, '.splinter-lock-game'), String(deadPid()));
    await installTree({
      ...version,
      keys: new Map(),
      cache,
      remote: store,
      output,
      replace: false,
      concurrency: 2,
    });
    expect(await snapshot(output)).toEqual(await snapshot(tree));
    expect(await readdir(parent)).toEqual(['game']);
  });

  it('is cleared by recoverOutput when its owner is gone, and kept while it runs', async () => {
    const parent = await tempDir('lock-recover');
    const output = join(parent, 'game');
    const lock = join(parent, '.splinter-lock-game');
    await writeFile(lock, String(deadPid()));
    recoverOutput(output);
    expect(await readdir(parent)).toEqual([]);
    await writeFile(lock, String(process.pid));
    recoverOutput(output);
    expect(await readdir(parent)).toEqual(['.splinter-lock-game']);
    // Interrupted (Ctrl-C), this process's own lock counts as gone too.
    recoverOutput(output, () => true);
    expect(await readdir(parent)).toEqual([]);
  });
});

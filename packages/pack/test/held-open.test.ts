import { readdir, rename, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { isSplinterError } from '@splintertree/errors';
import { OciLayoutTarget } from '@splintertree/oci';
import { installTree, PackCache } from '@splintertree/pack';
import { describe, expect, it } from 'vitest';
import { makeTree, publishInto, snapshot, tempDir } from './helpers.js';

/**
 * fs.rename as Windows answers it while a program holds `held` open without sharing delete: the file
 * and every folder above it refuse to move. The one call the double replaces; the rest is real.
 */
function renameWhileHeld(held: string, code: 'EBUSY' | 'EPERM') {
  return async (from: string, to: string) => {
    if (held === from || held.startsWith(from + sep)) {
      throw Object.assign(new Error(`${code}: resource busy or locked, rename '${from}' -> '${to}'`), {
        code,
        syscall: 'rename',
        path: from,
        dest: to,
      });
    }
    await rename(from, to);
  };
}

describe('a file the game holds open', () => {
  for (const [code, platform] of [
    ['EBUSY', 'linux'],
    ['EPERM', 'win32'],
  ] as const) {
    it(`fails the install with FILE_IN_USE naming it, the old tree intact (${code} on ${platform})`, async () => {
      const store = await OciLayoutTarget.open(await tempDir('held-store'));
      const cache = new PackCache(await tempDir('held-packs'));
      const publish = (dir: string) => publishInto(store, cache, dir);
      const tree = await tempDir('held-tree');
      await makeTree(tree, { largeBytes: 256 * 1024, smallFiles: 5 });
      const v1 = await publish(tree);
      await writeFile(join(tree, 'data', 'big.pak'), 'patched');
      const v2 = await publish(tree);
      const parent = await tempDir('held-out');
      const output = join(parent, 'game');
      const install = (version: typeof v1, extra: Parameters<typeof installTree>[0]['rename'] = undefined) =>
        installTree({
          ...version,
          keys: new Map(),
          cache,
          remote: store,
          output,
          replace: true,
          concurrency: 2,
          platform,
          rename: extra,
        });
      await install(v1);
      const before = await snapshot(output);
      const error = await install(v2, renameWhileHeld(join(output, 'data', 'big.pak'), code)).catch(
        (e: unknown) => e,
      );
      expect(isSplinterError(error) && error.code).toBe('FILE_IN_USE');
      expect((error as Error).message).toBe(
        `data/big.pak: cannot be replaced while another program has it open (${code}); the installed tree is unchanged`,
      );
      expect(await snapshot(output)).toEqual(before);
      expect(await readdir(parent)).toEqual(['game']);
      // Once the game lets go, the same update goes through.
      await install(v2);
      expect(await snapshot(output)).toEqual(await snapshot(tree));
    });
  }
});

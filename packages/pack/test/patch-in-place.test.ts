import { randomBytes } from 'node:crypto';
import { link, open, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OciLayoutTarget } from '@splintertree/oci';
import {
  type BaseVersion,
  type IndexEntry,
  type InstallOptions,
  installTree,
  PackCache,
  recoverOutput,
} from '@splintertree/pack';
import { describe, expect, it } from 'vitest';
import { publishInto, tempDir } from './helpers.js';

const MiB = 1024 * 1024;

/** A publisher's store, and a client whose pack cache can be emptied between installs. */
async function world() {
  const store = await OciLayoutTarget.open(await tempDir('store'));
  let cache = new PackCache(await tempDir('packs'));
  const publish = async (dir: string, base?: BaseVersion) => {
    const { root, entries } = await publishInto(store, cache, dir, { base });
    return { root, entries } satisfies BaseVersion;
  };
  const install = (
    version: BaseVersion,
    output: string,
    previous?: { entries: IndexEntry[]; installedAt: number },
    checkpoint?: InstallOptions['checkpoint'],
  ) =>
    installTree({
      checkpoint,
      root: version.root,
      entries: version.entries,
      keys: new Map(),
      cache,
      remote: store,
      output,
      replace: true,
      previous,
      concurrency: 2,
    });
  const emptyCache = async () => {
    cache = new PackCache(await tempDir('packs'));
  };
  return { publish, install, emptyCache };
}

/** A 16 MiB archive published and installed: the version an update starts from. */
async function installedV1() {
  const client = await world();
  const tree = await tempDir('tree');
  const original = randomBytes(16 * MiB);
  await writeFile(join(tree, 'archive.pak'), original);
  const v1 = await client.publish(tree);
  const output = join(await tempDir('out'), 'game');
  await client.install(v1, output);
  return { ...client, tree, original, v1, output, installedAt: Date.now() };
}

/** 16 MiB with 1 MiB overwritten at 8 MiB, or (insert) 1 MiB inserted there. */
function edited(original: Buffer, insert: boolean): Buffer {
  const middle = randomBytes(MiB);
  return Buffer.concat([
    original.subarray(0, 8 * MiB),
    middle,
    original.subarray(insert ? 8 * MiB : 9 * MiB),
  ]);
}

describe('updating an installed file from its previous version', () => {
  for (const insert of [false, true]) {
    it(`fetches only the new chunks of a 1 MiB ${insert ? 'insertion' : 'overwrite'}, with an empty cache`, async () => {
      const { publish, install, emptyCache, tree, original, v1, output, installedAt } = await installedV1();
      const before = await stat(join(output, 'archive.pak'));

      const next = edited(original, insert);
      await writeFile(join(tree, 'archive.pak'), next);
      const v2 = await publish(tree, v1);
      // The records of v1 are gone: what the update does not fetch comes from the installed file.
      await emptyCache();
      const update = await install(v2, output, { entries: v1.entries, installedAt });
      expect((await readFile(join(output, 'archive.pak'))).equals(next)).toBe(true);
      // At most the 2 MiB for a 1 MiB edit (the chunks around it are new too).
      expect(update.fetch.bytes).toBeLessThan(2 * MiB);
      const after = await stat(join(output, 'archive.pak'));
      if (insert) {
        // Most bytes moved: rebuilt as a new file beside the old one.
        expect(update.patched).toBe(0);
        expect(after.ino).not.toBe(before.ino);
      } else {
        // An edit in place is written in place (under a redo log): the same file, only 1 MiB written.
        expect(update.patched).toBe(1);
        expect(after.ino).toBe(before.ino);
        expect(after.nlink).toBe(1);
      }
      expect(await readdir(output)).toEqual(['archive.pak']);
      expect(await readdir(dirname(output))).toEqual(['game']);
    });
  }

  it('leaves the installed file untouched when the install stops before its tree is swapped in', async () => {
    const { publish, install, tree, original, v1, output, installedAt } = await installedV1();
    await writeFile(join(tree, 'archive.pak'), edited(original, false));
    const v2 = await publish(tree, v1);
    const stop = (step: string) => {
      if (step === 'swap') throw new Error('killed before the swap');
    };
    await expect(install(v2, output, { entries: v1.entries, installedAt }, stop)).rejects.toThrow(
      'killed before the swap',
    );
    expect((await readFile(join(output, 'archive.pak'))).equals(original)).toBe(true);
    // The journal went with the staging tree: a later recovery has nothing to apply to the old tree.
    recoverOutput(output, () => true);
    expect((await readFile(join(output, 'archive.pak'))).equals(original)).toBe(true);
    expect(await readdir(dirname(output))).toEqual(['game']);
  });

  it('finishes a patch in place that a kill cut short once the tree was swapped in', async () => {
    const { publish, install, tree, original, v1, output, installedAt } = await installedV1();
    const next = edited(original, false);
    await writeFile(join(tree, 'archive.pak'), next);
    const v2 = await publish(tree, v1);
    const kill = (step: string) => {
      if (step === 'redo') throw new Error('killed after the swap');
    };
    await expect(install(v2, output, { entries: v1.entries, installedAt }, kill)).rejects.toThrow(
      'killed after the swap',
    );
    // Published, not yet patched: the journal waits in the tree.
    expect(await readdir(output)).toEqual(['.splinter-redo', 'archive.pak']);
    expect((await readFile(join(output, 'archive.pak'))).equals(original)).toBe(true);
    recoverOutput(output, () => true);
    expect((await readFile(join(output, 'archive.pak'))).equals(next)).toBe(true);
    expect(await readdir(output)).toEqual(['archive.pak']);
    expect(await readdir(dirname(output))).toEqual(['game']);
  });

  it('copies, not patches, an installed file linked from elsewhere too', async () => {
    const { publish, install, tree, original, v1, output, installedAt } = await installedV1();
    const elsewhere = join(dirname(output), 'player-backup.pak');
    await link(join(output, 'archive.pak'), elsewhere);
    const next = edited(original, false);
    await writeFile(join(tree, 'archive.pak'), next);
    const v2 = await publish(tree, v1);
    const update = await install(v2, output, { entries: v1.entries, installedAt });
    expect(update.patched).toBe(0);
    expect((await readFile(join(output, 'archive.pak'))).equals(next)).toBe(true);
    expect((await readFile(elsewhere)).equals(original)).toBe(true);
  });

  it('does not trust an installed file a player changed since, even at the same size', async () => {
    const { publish, install, tree, original, v1, output, installedAt } = await installedV1();
    await fileClockPast(installedAt, output);
    // The player overwrites bytes far from the publisher's edit and puts the old times back: the
    // change time still tells.
    const file = await open(join(output, 'archive.pak'), 'r+');
    await file.write(Buffer.from('player bytes'), 0, 12, 2 * MiB);
    await file.close();
    const old = new Date(installedAt - 60_000);
    await utimes(join(output, 'archive.pak'), old, old);

    const next = edited(original, false);
    await writeFile(join(tree, 'archive.pak'), next);
    const v2 = await publish(tree, v1);
    await install(v2, output, { entries: v1.entries, installedAt });
    expect((await readFile(join(output, 'archive.pak'))).equals(next)).toBe(true);
  });
});

/**
 * Waits until the file system's clock (coarser than Date.now(), it can lag by a tick) stamps a change
 * later than `time`, so that a change made next is seen as made after it.
 */
async function fileClockPast(time: number, dir: string): Promise<void> {
  const probe = join(dir, '..', 'clock-probe');
  for (;;) {
    await writeFile(probe, '');
    if ((await stat(probe)).ctimeMs > time) return;
  }
}

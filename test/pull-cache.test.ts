import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, writeKeyPair } from '@splinter/sign';
import { type RunningRegistry, startRegistry } from '@splinter/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, tempDir } from '../packages/pack/test/helpers.js';
import { splinterCli } from './support.js';

interface PullJson {
  files: number;
  blobs: { downloaded: number; cached: number };
}

const LARGE = 5 * 1024 * 1024; // above the 4 MiB threshold: each is a file layer of its own

/**
 * A pulled file layer is written once, into the cache, and hard-linked into the tree. These tests pin
 * what that must never cost: an edit made through the tree must not leak into a later pull, nor into
 * content pushed to the embedded store, and two paths of one tree never share an inode.
 */
describe('pull: file layers linked from the cache', () => {
  let work: string;
  let registry: RunningRegistry;
  let tree: string;
  let reference: string;
  let player: Record<string, string>;
  const large = randomBytes(LARGE);

  beforeAll(async () => {
    work = await tempDir('pull-cache');
    registry = await startRegistry();
    await writeKeyPair(join(work, 'studio'), await generateKeyPair('studio'));
    tree = join(work, 'tree');
    await mkdir(join(tree, 'data', 'copy'), { recursive: true });
    await mkdir(join(tree, 'bin'), { recursive: true });
    await writeFile(join(tree, 'data', 'world.pak'), large);
    await writeFile(join(tree, 'data', 'copy', 'world.pak'), large); // the same bytes at a second path
    await writeFile(join(tree, 'bin', 'server'), randomBytes(LARGE));
    await chmod(join(tree, 'bin', 'server'), 0o755);
    await writeFile(join(tree, 'readme.txt'), 'small files travel in groups\n');
    const pushed = await splinterCli(
      [
        'patch',
        'push',
        tree,
        '--realm',
        'eu-1',
        '--version',
        '1',
        '--registry',
        registry.host,
        '--plain-http',
        '--key',
        join(work, 'studio.key'),
        '--json',
      ],
      { SPLINTER_HOME: join(work, 'studio-home'), COSIGN_PASSWORD: 'studio' },
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    reference = (JSON.parse(pushed.stdout) as { reference: string }).reference;
    player = { SPLINTER_HOME: join(work, 'player') };
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const pull = async (output: string, home = player, extra: string[] = []) => {
    const result = await splinterCli(
      [
        'patch',
        'pull',
        reference,
        '--output',
        output,
        '--plain-http',
        '--key',
        join(work, 'studio.pub'),
        '--json',
        ...extra,
      ],
      home,
    );
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as PullJson;
  };
  const blobFiles = async (home: Record<string, string>) => {
    const folder = join(home.SPLINTER_HOME!, 'store', 'blobs', 'sha256');
    return Promise.all(
      (await readdir(folder)).map(async (name) => ({ name, info: await stat(join(folder, name)) })),
    );
  };

  it('writes each downloaded file layer once: the tree file is the cache blob, with its mode', async () => {
    const output = join(work, 'first');
    const result = await pull(output);
    expect(await snapshot(output)).toEqual(await snapshot(tree));
    // world.pak, bin/server and the group holding readme.txt; the copy of world.pak is taken locally.
    expect(result.blobs).toMatchObject({ downloaded: 3, cached: 1 });

    const world = await stat(join(output, 'data', 'world.pak'));
    const copy = await stat(join(output, 'data', 'copy', 'world.pak'));
    const server = await stat(join(output, 'bin', 'server'));
    const blobs = await blobFiles(player);
    const isBlob = (info: { ino: number }) => blobs.some((blob) => blob.info.ino === info.ino);
    expect(isBlob(server)).toBe(true);
    expect(server.nlink).toBe(2); // the tree and the cache, nothing else
    expect(server.mode & 0o777).toBe(0o755);
    // One path with world.pak's bytes is the blob; the other has an inode of its own, so editing one
    // file never edits the other.
    expect([isBlob(world), isBlob(copy)].sort()).toEqual([false, true]);
    expect([world.nlink, copy.nlink].sort()).toEqual([1, 2]);
    expect(copy.ino).not.toBe(world.ino);
  });

  it('an in-place edit through the tree is caught: the next pull re-downloads that blob', async () => {
    const first = join(work, 'first');
    const paths = [join(first, 'data', 'world.pak'), join(first, 'data', 'copy', 'world.pak')];
    const links = await Promise.all(paths.map(async (path) => (await stat(path)).nlink));
    const edited = paths[links.indexOf(2)]!; // the one that is the cache blob
    const handle = await open(edited, 'r+'); // what a mod tool that patches bytes in place does
    await handle.write(Buffer.from('MODDED'), 0, 6, 1000);
    await handle.close();

    const second = join(work, 'second');
    const result = await pull(second);
    expect(await snapshot(second)).toEqual(await snapshot(tree));
    expect(result.blobs.downloaded).toBe(1); // only the edited blob; the others came from the cache
    // The edited file is the user's business: still edited, and no longer shared with the cache.
    expect((await readFile(edited)).subarray(1000, 1006).toString()).toBe('MODDED');
    expect((await stat(edited)).nlink).toBe(1);
  });

  it('a pull that replaces the tree links its unchanged files again instead of copying them', async () => {
    const home = { SPLINTER_HOME: join(work, 'player-replacing') };
    const first = join(work, 'replaced');
    await pull(first, home);
    const before = await stat(join(first, 'bin', 'server'));
    const result = await pull(first, home, ['--replace']);
    const after = await stat(join(first, 'bin', 'server'));
    expect(result.blobs.downloaded).toBe(0);
    expect(after.ino).toBe(before.ino);
    expect(after.nlink).toBe(2); // the old tree's link went with the old tree
    expect(await snapshot(first)).toEqual(await snapshot(tree));
  });

  it('copies instead of linking when the folder is on another file system than the cache', async () => {
    const otherFs = '/dev/shm'; // tmpfs on Linux: a file system of its own, so link() fails with EXDEV
    expect((await stat(otherFs)).dev, 'this test needs /dev/shm apart from the temp folder').not.toBe(
      (await stat(work)).dev,
    );
    const output = await mkdtemp(join(otherFs, 'splinter-pull-cache-'));
    try {
      const result = await pull(join(output, 'tree'), { SPLINTER_HOME: join(work, 'player-other-fs') });
      expect(result.blobs.downloaded).toBe(3);
      expect(await snapshot(join(output, 'tree'))).toEqual(await snapshot(tree));
      expect((await stat(join(output, 'tree', 'bin', 'server'))).nlink).toBe(1);
    } finally {
      await rm(output, { recursive: true, force: true });
    }
  });

  it('content pushed to the embedded store never shares an inode with a pulled tree', async () => {
    const home = { SPLINTER_HOME: join(work, 'player-pushing') };
    const output = join(work, 'for-push');
    await pull(output, home);
    const shared = await stat(join(output, 'bin', 'server'));
    expect(shared.nlink).toBe(2);
    // The same home now becomes the home of a patch holding the same file.
    const pushed = await splinterCli(
      ['patch', 'push', tree, '--realm', 'local', '--version', '1', '--json'],
      home,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    expect((await stat(join(output, 'bin', 'server'))).nlink).toBe(1);
    for (const blob of await blobFiles(home)) expect(blob.info.nlink, blob.name).toBe(1);

    // An edit through the pulled tree can no longer reach the embedded patch.
    const handle = await open(join(output, 'bin', 'server'), 'r+');
    await handle.write(Buffer.from('MODDED'), 0, 6, 0);
    await handle.close();
    const local = join(work, 'from-embedded');
    const embedded = (JSON.parse(pushed.stdout) as { reference: string }).reference;
    const fromStore = await splinterCli(
      ['patch', 'pull', embedded, '--output', local, '--insecure-skip-verify', '--json'],
      home,
    );
    expect(fromStore.code, fromStore.stderr).toBe(0);
    expect(await snapshot(local)).toEqual(await snapshot(tree));
  });
});

import { randomBytes } from 'node:crypto';
import { appendFile, cp, lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningRegistry, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, splinterCli, tempDir } from './support.js';

const MIB = 1024 * 1024;

/** Every regular file under `root`, by inode number (st_ino), with its path. */
async function inodes(root: string): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (const name of await readdir(root, { recursive: true })) {
    const info = await lstat(join(root, name));
    if (info.isFile()) found.set(info.ino, join(root, name));
  }
  return found;
}

/** Fails if any inode is shared by two of the trees (a hard link across them). */
async function expectNoSharedInode(trees: string[]): Promise<void> {
  const owner = new Map<number, string>();
  for (const tree of trees) {
    for (const [ino, path] of await inodes(tree)) {
      expect(owner.get(ino), `${path} shares inode ${ino} with ${owner.get(ino)}`).toBeUndefined();
      owner.set(ino, path);
    }
  }
}

describe('three concurrent pulls sharing one cache', () => {
  let work: string;
  let registry: RunningRegistry;
  let v1: string;
  let v2: string;
  const home = () => ({ SPLINTER_HOME: join(work, 'home') });
  const pull = (version: string, output: string) =>
    splinterCli(
      [
        'mod',
        'pull',
        `${registry.host}/mods/shared:${version}`,
        '--output',
        output,
        '--replace',
        '--plain-http',
        '--insecure-skip-verify',
      ],
      home(),
    );

  beforeAll(async () => {
    work = await tempDir('concurrent');
    registry = await startRegistry();
    v1 = join(work, 'v1');
    await mkdir(join(v1, 'data'), { recursive: true });
    for (let i = 0; i < 6; i++) await writeFile(join(v1, 'data', `part-${i}.pak`), randomBytes(MIB));
    await writeFile(join(v1, 'readme.txt'), 'v1\n');
    v2 = join(work, 'v2');
    await cp(v1, v2, { recursive: true });
    await appendFile(join(v2, 'readme.txt'), 'v2\n');
    for (const [dir, version] of [
      [v1, '1'],
      [v2, '2'],
    ] as const) {
      const pushed = await splinterCli(
        [
          'mod',
          'push',
          dir,
          '--name',
          'shared',
          '--version',
          version,
          '--registry',
          registry.host,
          '--plain-http',
        ],
        { SPLINTER_HOME: join(work, 'publisher') },
      );
      expect(pushed.code, pushed.stderr).toBe(0);
    }
  });

  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('into three folders: each update links only from its own folder, no inode is shared across trees', async () => {
    const outputs = [0, 1, 2].map((i) => join(work, 'three', `game-${i}`));
    for (const result of await Promise.all(outputs.map((output) => pull('1', output))))
      expect(result.code, result.stderr).toBe(0);
    await expectNoSharedInode(outputs);
    for (const result of await Promise.all(outputs.map((output) => pull('2', output))))
      expect(result.code, result.stderr).toBe(0);
    for (const output of outputs) expect(await snapshot(output)).toEqual(await snapshot(v2));
    await expectNoSharedInode(outputs);
    expect((await readdir(join(work, 'three'))).sort()).toEqual(['game-0', 'game-1', 'game-2']);
  });

  it('into one folder at once: one complete tree at the end, no old tree beside it sharing inodes', async () => {
    const parent = join(work, 'one');
    const output = join(parent, 'game');
    expect((await pull('1', output)).code).toBe(0);
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(['2', '1', '2'].map((version) => pull(version, output)));
      for (const result of results) expect(result.code, result.stderr).toBe(0);
      const beside = await readdir(parent);
      expect(beside).toEqual(['game']);
      const installed = await snapshot(output);
      expect([await snapshot(v1), await snapshot(v2)]).toContainEqual(installed);
    }
  });
});

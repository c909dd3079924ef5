import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TreeEntry, walkTree } from '@splintertree/pack';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';

/** Each entry as `path: what it is`, a file by its content. */
async function shape(entries: TreeEntry[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of entries) {
    if (entry.type === 'directory') out[entry.path] = 'dir';
    else if (entry.type === 'symlink') out[entry.path] = `link ${entry.target}`;
    else out[entry.path] = `file ${await readFile(entry.absolutePath, 'utf8')}`;
  }
  return out;
}

describe('walkTree with dereference: links inside a followed outside folder', () => {
  let work: string;
  let tree: string;
  let outside: string;
  beforeEach(async () => {
    // work/tree/ext -> work/outside/folder; work/outside holds what the folder's links may reach.
    work = await tempDir('walk');
    tree = join(work, 'tree');
    outside = join(work, 'outside');
    await mkdir(join(outside, 'folder', 'deep'), { recursive: true });
    await mkdir(tree);
    await writeFile(join(tree, 'game.bin'), 'the game');
    await writeFile(join(tree, 'sibling.txt'), 'in the tree');
    await writeFile(join(outside, 'sibling.txt'), 'outside');
    await writeFile(join(outside, 'folder', 'one.map'), 'level one');
    await symlink(join(outside, 'folder'), join(tree, 'ext'));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('resolves a relative link from its real folder, not from where the tree puts it', async () => {
    // From tree/ext, "../sibling.txt" reads as the tree's own sibling.txt; it is the outside one.
    await symlink('../sibling.txt', join(outside, 'folder', 'up'));
    const got = await shape(await walkTree(tree, { dereference: true }));
    expect(got).toEqual({
      ext: 'dir',
      'ext/deep': 'dir',
      'ext/one.map': 'file level one',
      'ext/up': 'file outside',
      'game.bin': 'file the game',
      'sibling.txt': 'file in the tree',
    });
  });

  it('keeps a link to a place the tree has, in the tree or in the followed folder', async () => {
    await symlink('../../tree/game.bin', join(outside, 'folder', 'game'));
    await symlink(join(tree, 'game.bin'), join(outside, 'folder', 'deep', 'absolute'));
    await symlink('../../../tree', join(outside, 'folder', 'deep', 'home'));
    await symlink('../one.map', join(outside, 'folder', 'deep', 'latest.map'));
    await symlink(join(outside, 'folder', 'one.map'), join(outside, 'folder', 'deep', 'first.map'));
    await symlink('.', join(outside, 'folder', 'self'));
    await symlink('..', join(outside, 'folder', 'deep', 'up'));
    const got = await shape(await walkTree(tree, { dereference: true }));
    expect(got).toMatchObject({
      'ext/game': 'link ../game.bin',
      'ext/deep/absolute': 'link ../../game.bin',
      'ext/deep/home': 'link ../..',
      'ext/deep/latest.map': 'link ../one.map',
      'ext/deep/first.map': 'link ../one.map',
      'ext/self': 'link .',
      'ext/deep/up': 'link ..',
    });
  });

  it('keeps a link back to an earlier followed folder as a link into its copy', async () => {
    await mkdir(join(outside, 'other'));
    await writeFile(join(outside, 'other', 'two.map'), 'level two');
    await symlink('../other', join(outside, 'folder', 'to-other'));
    await symlink('../folder/one.map', join(outside, 'other', 'one.map'));
    const got = await shape(await walkTree(tree, { dereference: true }));
    expect(got).toMatchObject({
      'ext/to-other': 'dir',
      'ext/to-other/two.map': 'file level two',
      'ext/to-other/one.map': 'link ../one.map',
    });
  });

  it('refuses a link to a folder above the followed one, which would be walked for ever', async () => {
    // work/ holds the tree, and so the link that led to the folder.
    await symlink('../../..', join(outside, 'folder', 'deep', 'top'));
    const walked = walkTree(tree, { dereference: true });
    await expect(walked).rejects.toMatchObject({ code: 'UNSAFE_LINK' });
    await expect(walked).rejects.toThrow('ext/deep/top: symlink "../../.." makes a loop');
    await rm(join(outside, 'folder', 'deep', 'top'));
    // outside/ holds the folder: walking it would reach this link again.
    await symlink('../..', join(outside, 'folder', 'deep', 'top'));
    await expect(walkTree(tree, { dereference: true })).rejects.toThrow(
      'ext/deep/top: symlink "../.." makes a loop',
    );
  });
});

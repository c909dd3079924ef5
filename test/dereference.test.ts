import { createHash } from 'node:crypto';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, splinterCli, tempDir } from './support.js';

describe('push --dereference follows symlinks as tar -h and cp -L do', () => {
  let work: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    work = await tempDir('dereference');
    env = { SPLINTER_HOME: join(work, 'home') };
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const push = (dir: string, version: string, extra: string[]) =>
    splinterCli(['mod', 'push', dir, '--name', 'game', '--version', version, '--json', ...extra], env);

  it('copies in what links outside point at and keeps links inside the tree', async () => {
    // What a game folder looks like: fonts linked to the system's, a data folder linked from elsewhere.
    const system = join(work, 'system');
    await mkdir(join(system, 'shared', 'levels'), { recursive: true });
    await writeFile(join(system, 'DejaVuSans.ttf'), 'a font\n');
    await writeFile(join(system, 'shared', 'levels', 'one.map'), 'level one\n');
    await symlink('one.map', join(system, 'shared', 'levels', 'latest.map'));
    const tree = join(work, 'tree');
    await mkdir(join(tree, 'fonts'), { recursive: true });
    await writeFile(join(tree, 'game.bin'), 'the game\n');
    await symlink(join(system, 'DejaVuSans.ttf'), join(tree, 'fonts', 'sans.ttf'));
    await symlink('sans.ttf', join(tree, 'fonts', 'default.ttf'));
    await symlink('../system/shared', join(tree, 'shared'));
    await symlink(join(tree, 'game.bin'), join(tree, 'fonts', 'absolute-inside'));

    const plain = await push(tree, '1', []);
    expect(plain.code).toBe(4);
    expect(plain.stderr).toMatch(/^splinter: UNSAFE_LINK: /);

    const pushed = await push(tree, '1', ['--dereference']);
    expect(pushed.code, pushed.stderr).toBe(0);
    const out = join(work, 'out');
    const pulled = await splinterCli(
      ['mod', 'pull', 'mods/game:1', '--output', out, '--insecure-skip-verify'],
      env,
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    const got = await snapshot(out);
    const file = (content: string) => `file 644 ${createHash('sha256').update(content).digest('hex')}`;
    expect(got).toEqual({
      fonts: 'dir',
      'fonts/absolute-inside': 'link ../game.bin',
      'fonts/default.ttf': 'link sans.ttf',
      'fonts/sans.ttf': file('a font\n'),
      'game.bin': file('the game\n'),
      shared: 'dir',
      'shared/levels': 'dir',
      'shared/levels/latest.map': 'link one.map',
      'shared/levels/one.map': file('level one\n'),
    });
  });

  it('refuses dangling and looping links it was asked to follow', async () => {
    const dangling = join(work, 'dangling');
    await mkdir(dangling);
    await symlink('/nonexistent/font.ttf', join(dangling, 'font.ttf'));
    const refused = await push(dangling, '2', ['--dereference']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(
      /^splinter: UNSAFE_LINK: font\.ttf: symlink "\/nonexistent\/font\.ttf" cannot be followed \(ENOENT\)/,
    );

    const outside = join(work, 'outside');
    await mkdir(outside);
    // A link to the folder holding the followed one (and the tree): walking it would never end.
    await symlink(work, join(outside, 'again'));
    const looping = join(work, 'looping');
    await mkdir(looping);
    await symlink(outside, join(looping, 'outside'));
    const loop = await push(looping, '3', ['--dereference']);
    expect(loop.code).toBe(4);
    expect(loop.stderr).toMatch(/^splinter: UNSAFE_LINK: outside\/again: symlink .* makes a loop/);
  });
});

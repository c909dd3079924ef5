import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type MountedFileSystem, mountCaseInsensitive } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splinterCli, tempDir } from './support.js';

/** Path -> content hash of every file, and the exact names as the file system lists them. */
async function contents(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await readdir(root, { recursive: true })) {
    if (!(await lstat(join(root, name))).isFile()) continue;
    out[name] = createHash('sha256')
      .update(await readFile(join(root, name)))
      .digest('hex');
  }
  return out;
}

describe('installs on a case-insensitive file system (exFAT, loop-mounted)', async () => {
  const disk: MountedFileSystem | undefined = await mountCaseInsensitive();
  let work: string;
  const env = () => ({ SPLINTER_HOME: join(work, 'home') });
  const pull = (version: string, output: string) =>
    splinterCli(
      ['mod', 'pull', `mods/cased:${version}`, '--output', output, '--replace', '--insecure-skip-verify'],
      env(),
    );

  beforeAll(async () => {
    work = await tempDir('case');
  });

  afterAll(async () => {
    await disk?.unmount();
    await rm(work, { recursive: true, force: true });
  });

  it.skipIf(!disk)(
    'installs names as published, then an update renaming Readme.txt to README.txt',
    async () => {
      const pak = randomBytes(1024 * 1024);
      const trees: Record<string, Record<string, Buffer | string>> = {
        '1': { 'Readme.txt': 'read me\n', 'data/Level.pak': pak, 'Café.txt': 'NFC é\n' },
        '2': { 'README.txt': 'read me\n', 'data/Level.pak': pak, 'Café.txt': 'NFC é\n' },
      };
      for (const [version, files] of Object.entries(trees)) {
        const dir = join(work, `v${version}`);
        for (const [path, data] of Object.entries(files)) {
          await mkdir(join(dir, path, '..'), { recursive: true });
          await writeFile(join(dir, path), data);
        }
        const pushed = await splinterCli(
          ['mod', 'push', dir, '--name', 'cased', '--version', version],
          env(),
        );
        expect(pushed.code, pushed.stderr).toBe(0);
      }
      const parent = join(disk!.dir, 'games');
      const output = join(parent, 'game');
      const first = await pull('1', output);
      expect(first.code, first.stderr).toBe(0);
      expect(await contents(output)).toEqual(await contents(join(work, 'v1')));
      expect((await readdir(output)).sort()).toEqual(['Café.txt', 'Readme.txt', 'data']);

      const update = await pull('2', output);
      expect(update.code, update.stderr).toBe(0);
      // The new spelling, and no leftover of the old one (the file system would list it as it was made).
      expect((await readdir(output)).sort()).toEqual(['Café.txt', 'README.txt', 'data']);
      expect(await contents(output)).toEqual(await contents(join(work, 'v2')));
      expect(await readdir(parent)).toEqual(['game']);
    },
  );
});

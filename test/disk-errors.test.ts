import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type MountedFileSystem,
  mountTmpfs,
  type RunningRegistry,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splinterCli, tempDir } from './support.js';

const MIB = 1024 * 1024;

/** The one line a refused pull prints on stderr, with its code. */
function oneLine(stderr: string): string {
  const lines = stderr
    .split('\n')
    .filter((line) => line.startsWith('splinter: ') && !line.includes('warning'));
  expect(lines, stderr).toHaveLength(1);
  return lines[0]!;
}

describe('a disk that refuses: one line with its own code, at concurrency 4, no hang', async () => {
  let work: string;
  let registry: RunningRegistry;
  let small: MountedFileSystem | undefined;
  // Mounted before the tests are collected, so that a machine without mount skips them (never under CI).
  small = await mountTmpfs('6m');

  const pull = (home: string, output: string) =>
    splinterCli(
      [
        'mod',
        'pull',
        `${registry.host}/mods/big:1`,
        '--output',
        output,
        '--plain-http',
        '--insecure-skip-verify',
        '--concurrency',
        '4',
      ],
      { SPLINTER_HOME: home },
    );

  beforeAll(async () => {
    work = await tempDir('disk');
    registry = await startRegistry();
    const tree = join(work, 'tree');
    await mkdir(join(tree, 'data'), { recursive: true });
    // Eight 2 MiB files: four are written at once when the disk fills.
    for (let i = 0; i < 8; i++) await writeFile(join(tree, 'data', `part-${i}.pak`), randomBytes(2 * MIB));
    const pushed = await splinterCli(
      ['mod', 'push', tree, '--name', 'big', '--version', '1', '--registry', registry.host, '--plain-http'],
      { SPLINTER_HOME: join(work, 'publisher') },
    );
    expect(pushed.code, pushed.stderr).toBe(0);
  });

  afterAll(async () => {
    await small?.unmount();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it.skipIf(!small)(
    'an output folder on a full disk: NO_SPACE naming the file, exit 1, nothing left',
    async () => {
      const output = join(small!.dir, 'out', 'game');
      const result = await pull(join(work, 'home-output'), output);
      expect(result.code, result.stderr).toBe(1);
      expect(oneLine(result.stderr)).toMatch(
        /^splinter: NO_SPACE: \S*part-\d\.pak: no space left on the device \(ENOSPC\)$/,
      );
      expect(await readdir(join(small!.dir, 'out'))).toEqual([]);
    },
  );

  it.skipIf(!small)(
    'a cache on a full disk: NO_SPACE, exit 1, and the next pull elsewhere works',
    async () => {
      const home = join(small!.dir, 'home');
      const result = await pull(home, join(work, 'cache-full', 'game'));
      expect(result.code, result.stderr).toBe(1);
      expect(oneLine(result.stderr)).toMatch(/^splinter: NO_SPACE: .* \(ENOSPC\)$/);
      await rm(home, { recursive: true, force: true });
      const again = await pull(join(work, 'home-roomy'), join(work, 'cache-full', 'game'));
      expect(again.code, again.stderr).toBe(0);
    },
  );
});

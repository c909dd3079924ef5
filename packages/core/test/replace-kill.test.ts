import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSplinter, settingsFromEnvironment } from '@splintertree/core';
import { OciLayoutTarget } from '@splintertree/oci';
import { installTree, PackCache, packDescriptor, publishTree, readIndex } from '@splintertree/pack';
import { describe, expect, it } from 'vitest';
import { snapshot } from '../../pack/test/helpers.js';

const CHILD = join(import.meta.dirname, 'fixtures', 'install-killed.mjs');

async function tree(root: string, text: string): Promise<string> {
  await mkdir(join(root, 'data'), { recursive: true });
  await writeFile(join(root, 'data', 'level.dat'), text.repeat(5000));
  await writeFile(join(root, 'readme.txt'), text);
  return root;
}

describe('kill -9 inside --replace: the next run of any command leaves one complete tree', () => {
  for (const step of ['aside', 'swap'] as const) {
    it(`killed before the ${step === 'aside' ? 'first' : 'second'} rename: the old tree is whole afterwards`, async () => {
      const work = await mkdtemp(join(tmpdir(), 'splinter-replace-kill-'));
      const home = join(work, 'home');
      const parent = join(work, 'out');
      const output = join(parent, 'game');
      const v1 = await tree(join(work, 'v1'), 'one ');
      const v2 = await tree(join(work, 'v2'), 'two ');
      // v1 installed as the CLI would.
      const store = await OciLayoutTarget.open(join(work, 'store'));
      await mkdir(join(work, 'work'));
      await mkdir(join(work, 'work2'));
      const uploads: Array<Promise<void>> = [];
      const published = await publishTree({
        dir: v1,
        workDir: join(work, 'work'),
        onPack: (pack) => uploads.push(store.push(packDescriptor(pack.entry), createReadStream(pack.path))),
      });
      await Promise.all(uploads);
      const cache = new PackCache(join(home, 'packs'));
      const entries = await readIndex(published.root, {
        cache,
        remote: store,
        keys: new Map(),
        concurrency: 2,
      });
      await installTree({
        root: published.root,
        entries,
        keys: new Map(),
        cache,
        remote: store,
        output,
        replace: true,
        concurrency: 2,
      });

      const child = spawn(
        process.execPath,
        [
          CHILD,
          join(work, 'store'),
          join(home, 'packs'),
          join(work, 'work2'),
          v2,
          output,
          join(home, 'journal'),
          step,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (data) => {
        stderr += data;
      });
      const signal = await new Promise((resolve) => child.once('exit', (_code, killed) => resolve(killed)));
      expect(signal, stderr).toBe('SIGKILL');
      const left = (await readdir(parent)).sort();
      if (step === 'swap') {
        // The window: no output, the old tree aside, the new one staged.
        expect(left.filter((name) => name === 'game')).toEqual([]);
        const aside = left.find((name) => name.startsWith('game.splinter-old-'))!;
        expect(await snapshot(join(parent, aside))).toEqual(await snapshot(v1));
      } else {
        expect(left).toContain('game');
      }
      expect(left.some((name) => name.startsWith('.splinter-staging-'))).toBe(true);
      expect(await readdir(join(home, 'journal'))).toHaveLength(1);

      // Any command opens SPLINTER_HOME this way first.
      const splinter = await openSplinter({ settings: settingsFromEnvironment({ SPLINTER_HOME: home }) });
      await splinter.close();
      expect(await readdir(parent)).toEqual(['game']);
      expect(await snapshot(output)).toEqual(await snapshot(v1));
      expect(await readdir(join(home, 'journal'))).toEqual([]);
    });
  }
});

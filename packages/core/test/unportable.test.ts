import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSplinter, settingsFromEnvironment } from '@splintertree/core';
import { isSplinterError } from '@splintertree/errors';
import { type FaultProxy, type RunningRegistry, startFaultProxy, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('--allow-unportable is recorded in the manifest; other platforms refuse the version', () => {
  let work: string;
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let reference: string;

  const open = (home: string, platform: NodeJS.Platform) =>
    openSplinter({
      settings: settingsFromEnvironment({ SPLINTER_HOME: join(work, home) }),
      plainHttp: true,
      platform,
    });

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'splinter-unportable-'));
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    const tree = join(work, 'tree');
    await mkdir(tree);
    // Linux-only content: two names one case-insensitive file system cannot hold side by side.
    await writeFile(join(tree, 'Readme.txt'), 'a');
    await writeFile(join(tree, 'readme.txt'), 'b');
    const publisher = await open('publisher', 'linux');
    try {
      const refused = await publisher
        .push({ kind: 'mod', dir: tree, name: 'linux-only', version: '1', registry: proxy.host })
        .catch((error: unknown) => error);
      expect(isSplinterError(refused) && refused.code).toBe('UNPORTABLE_PATH');
      const pushed = await publisher.push({
        kind: 'mod',
        dir: tree,
        name: 'linux-only',
        version: '1',
        registry: proxy.host,
        allowUnportable: true,
      });
      reference = pushed.reference;
      const inspected = await publisher.inspect(reference);
      expect(inspected.annotations['dev.splintertree.portable']).toBe('false');
    } finally {
      await publisher.close();
    }
  });

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  for (const platform of ['win32', 'darwin'] as const) {
    it(`a launcher on ${platform} refuses it with UNPORTABLE_PATH before reading any blob`, async () => {
      const client = await open(`client-${platform}`, platform);
      const mark = proxy.log.length;
      try {
        const error = await client
          .pull({
            kind: 'mod',
            reference,
            output: join(work, `out-${platform}`, 'game'),
            trust: { skipVerification: true },
          })
          .catch((e: unknown) => e);
        expect(isSplinterError(error) && error.code).toBe('UNPORTABLE_PATH');
        expect((error as Error).message).toMatch(
          /records paths for Linux file systems only: they cannot all exist on (Windows|macOS); nothing was downloaded$/,
        );
        expect((error as { details?: unknown }).details).toMatchObject({ reason: 'unportable-version' });
        expect(proxy.log.slice(mark).filter((r) => r.path.includes('/blobs/'))).toEqual([]);
        expect(await readdir(join(work, `out-${platform}`)).catch(() => [])).toEqual([]);
      } finally {
        await client.close();
      }
    });
  }

  it('a Linux client installs it', async () => {
    const client = await open('client-linux', 'linux');
    try {
      const output = join(work, 'out-linux', 'game');
      await client.pull({ kind: 'mod', reference, output, trust: { skipVerification: true } });
      expect((await readdir(output)).sort()).toEqual(['Readme.txt', 'readme.txt']);
    } finally {
      await client.close();
    }
  });
});

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type FaultProxy,
  type FreshDatabase,
  freshDatabase,
  type RunningRegistry,
  requireTool,
  startFaultProxy,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { snapshot } from '../packages/pack/test/helpers.js';
import { CLI, run, scrubbedEnv, splinterCli, type TransferJson } from './support.js';

interface Pulled {
  transfer: TransferJson;
  kept: number;
  files: number;
}

const MIB = 1024 * 1024;

describe('chunked pulls from a real registry', () => {
  let work: string;
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let database: FreshDatabase;
  let v1: string;
  let v2: string;
  let pak: Buffer;

  const env = (client: string) => ({ SPLINTER_HOME: join(work, client, 'home'), DATABASE_URL: database.url });
  const reference = (version: string, host = proxy.host) => `${host}/patches/game:${version}`;
  const pull = async (home: string, version: string, output: string, extra: string[] = []) => {
    const result = await splinterCli(
      [
        'patch',
        'pull',
        reference(version),
        '--output',
        output,
        '--replace',
        '--plain-http',
        '--insecure-skip-verify',
        '--json',
        ...extra,
      ],
      env(home),
    );
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as Pulled;
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'splinter-chunked-'));
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    database = await freshDatabase('chunked_pull', { migrate: true });
    v1 = join(work, 'v1');
    await mkdir(join(v1, 'text', 'deDE'), { recursive: true });
    pak = randomBytes(12 * MIB);
    await writeFile(join(v1, 'game.pak'), pak);
    await writeFile(join(v1, 'text', 'deDE', 'strings.bin'), randomBytes(2 * MIB));
    await writeFile(join(v1, 'readme.txt'), 'hello\n'.repeat(1000));
    await writeFile(join(work, 'tags.json'), JSON.stringify({ 'locale:deDE': ['**/deDE/**'] }));
    v2 = join(work, 'v2');
    await run('cp', ['-a', v1, v2]);
    const edited = Buffer.from(pak);
    randomBytes(MIB).copy(edited, 5 * MIB); // 1 MiB overwritten in place
    await writeFile(join(v2, 'game.pak'), edited);
    for (const [dir, version] of [
      [v1, '1'],
      [v2, '2'],
    ] as const) {
      const pushed = await splinterCli(
        [
          'patch',
          'push',
          dir,
          '--realm',
          'game',
          '--version',
          version,
          '--registry',
          registry.host,
          '--plain-http',
          '--tags',
          join(work, 'tags.json'),
          '--json',
        ],
        env('publisher'),
      );
      expect(pushed.code, pushed.stderr).toBe(0);
    }
  });

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await database?.drop();
    await rm(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    proxy.clear();
    proxy.log.length = 0;
  });

  it('updates with single-range requests costing about the changed MiB', async () => {
    const output = join(work, 'update', 'game');
    const fresh = await pull('update', '1', output);
    expect(fresh.transfer.bytes).toBeGreaterThan(14 * MIB);
    expect(fresh.transfer.bytes).toBeLessThan(15 * MIB);
    proxy.log.length = 0;
    const update = await pull('update', '2', output);
    expect(await snapshot(output)).toEqual(await snapshot(v2));
    expect(update.transfer.bytes).toBeLessThan(2 * MIB);
    expect(update.kept).toBe(2);
    const ranged = proxy.log.filter((r) => r.path.includes('/blobs/') && r.range !== undefined);
    expect(ranged.length).toBeGreaterThan(0);
    expect(ranged.every((r) => /^bytes=\d+-\d+$/.test(r.range!))).toBe(true); // never multi-range
    expect(ranged.length).toBeLessThanOrEqual(30);
  });

  it('reads whole packs from a registry that ignores Range (200) or refuses it (416, 400)', async () => {
    for (const fault of [
      { kind: 'ignore-range' },
      { kind: 'status', status: 416 },
      { kind: 'status', status: 400 },
    ] as const) {
      proxy.clear();
      proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, range: true, fault });
      const home = `fallback-${fault.kind}-${'status' in fault ? fault.status : ''}`;
      const output = join(work, home, 'game');
      const result = await pull(home, '2', output);
      expect(result.transfer.wholePacks, fault.kind).toBeGreaterThan(0);
      expect(await snapshot(output)).toEqual(await snapshot(v2));
    }
  });

  it('asks the registry again when a storage redirect has expired', async () => {
    proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'redirect', uses: 1 } });
    const output = join(work, 'redirect', 'game');
    await pull('redirect', '2', output);
    expect(await snapshot(output)).toEqual(await snapshot(v2));
    expect(proxy.log.some((r) => r.listener === 'storage' && r.status === 403)).toBe(true);
  });

  it('installs the common files plus one locale, and fetches only that locale when it changes', async () => {
    const output = join(work, 'locale', 'game');
    const english = await pull('locale', '2', output, ['--locale', 'enUS']);
    expect(Object.keys(await snapshot(output))).not.toContain('text/deDE/strings.bin');
    expect(english.transfer.bytes).toBeLessThan(13 * MIB);
    const german = await pull('locale', '2', output, ['--locale', 'deDE']);
    expect(await snapshot(output)).toEqual(await snapshot(v2));
    expect(german.transfer.bytes).toBeGreaterThan(1.9 * MIB);
    expect(german.transfer.bytes).toBeLessThan(2.3 * MIB);
  });

  it('installs from a mirror made by skopeo copy', async () => {
    const skopeo = requireTool('skopeo');
    const mirror = await startRegistry();
    try {
      await run(skopeo, [
        'copy',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${registry.host}/patches/game:2`,
        `docker://${mirror.host}/patches/game:2`,
      ]);
      const output = join(work, 'mirror', 'game');
      const result = await splinterCli(
        [
          'patch',
          'pull',
          `${mirror.host}/patches/game:2`,
          '--output',
          output,
          '--plain-http',
          '--insecure-skip-verify',
          '--json',
        ],
        env('mirror'),
      );
      expect(result.code, result.stderr).toBe(0);
      expect(await snapshot(output)).toEqual(await snapshot(v2));
    } finally {
      await mirror.stop();
    }
  });

  it('a pull killed with SIGKILL mid-download leaves nothing behind once the next pull has run', async () => {
    const home = 'killed';
    const output = join(work, home, 'game');
    await pull(home, '1', output);
    proxy.add({
      method: 'GET',
      path: /\/blobs\/sha256:/,
      range: true,
      fault: { kind: 'slow', delayMs: 200 },
    });
    const child = spawn(
      process.execPath,
      [
        CLI,
        'patch',
        'pull',
        reference('2'),
        '--output',
        output,
        '--replace',
        '--plain-http',
        '--insecure-skip-verify',
      ],
      { env: scrubbedEnv(env(home)), stdio: 'ignore' },
    );
    // Killed once the first ranged body bytes have been sent: the download is under way.
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (proxy.log.some((r) => r.range !== undefined && r.bytes > 0)) {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(await snapshot(output)).toEqual(await snapshot(v1)); // the old tree, whole
    proxy.clear();
    await pull(home, '2', output);
    expect(await snapshot(output)).toEqual(await snapshot(v2));
    const beside = await readdir(join(work, home));
    expect(beside.sort()).toEqual(['game', 'home']);
    const packs = await readdir(join(work, home, 'home', 'packs'));
    expect(packs.filter((name) => name.includes('.tmp-'))).toEqual([]);
  });
});

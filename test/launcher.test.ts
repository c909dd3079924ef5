import { randomBytes } from 'node:crypto';
import { cp, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, writeKeyPair } from '@splintertree/sign';
import {
  type FreshDatabase,
  freshDatabase,
  type RunningRegistry,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, tempDir } from '../packages/pack/test/helpers.js';
import { type ServedApi, serveApi } from './serve.js';
import { splinterCli } from './support.js';

interface SyncJson {
  action: string;
  head: { id: string; version: string } | null;
  transfer?: { requests: number; bytes: number };
  staged: Array<{ id: string; version: string; transfer: { requests: number; bytes: number } }>;
}

/** Two versions of a game: v2 changes a large file and adds one, so it shares some chunks with v1. */
async function writeVersion(root: string, version: 1 | 2, large: Buffer): Promise<void> {
  await mkdir(join(root, 'data'), { recursive: true });
  await writeFile(join(root, 'data', 'world.pak'), version === 1 ? large : Buffer.concat([large, large]));
  await writeFile(join(root, 'data', 'shared.pak'), large.subarray(0, 4 * 1024 * 1024 + 9));
  await writeFile(join(root, 'game.ini'), `[game]\nversion=${version}\n`);
  if (version === 2) await writeFile(join(root, 'data', 'new-zone.bin'), randomBytes(30_000));
}

describe('splinter launcher sync: preload staging, unlock at activation, rollback from the cache', () => {
  let work: string;
  let registry: RunningRegistry;
  let database: FreshDatabase;
  let api: ServedApi;
  let operator: Record<string, string>;
  let player: Record<string, string>;
  let token: string;
  const trees = { v1: '', v2: '' };

  beforeAll(async () => {
    work = await tempDir('launcher');
    registry = await startRegistry();
    database = await freshDatabase('launcher', { migrate: true });
    operator = {
      SPLINTER_HOME: join(work, 'operator'),
      DATABASE_URL: database.url,
      SPLINTER_KEK: randomBytes(32).toString('base64'),
      SPLINTERTREE_PATCH_REGISTRY: registry.host,
      COSIGN_PASSWORD: 'studio',
      USER: 'release-bot',
    };
    player = { SPLINTER_HOME: join(work, 'player') };
    await writeKeyPair(join(work, 'studio'), await generateKeyPair('studio'));
    const large = randomBytes(6 * 1024 * 1024);
    trees.v1 = join(work, 'v1');
    trees.v2 = join(work, 'v2');
    await writeVersion(trees.v1, 1, large);
    await writeVersion(trees.v2, 2, large);
    api = await serveApi(operator);
    const created = await splinterCli(['token', 'create', '--realm', 'eu-1', '--json'], operator);
    token = (JSON.parse(created.stdout) as { token: string }).token;
  });
  afterAll(async () => {
    await api?.stop();
    await database?.drop();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const operatorDo = async (args: string[]) => {
    const result = await splinterCli([...args, '--json'], operator);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as { id: string };
  };
  const push = (tree: string, version: string, extra: string[] = []) =>
    operatorDo([
      'patch',
      'push',
      tree,
      '--realm',
      'eu-1',
      '--version',
      version,
      '--plain-http',
      '--key',
      join(work, 'studio.key'),
      ...extra,
    ]);
  const sync = async (apiUrl = api.url, extra: string[] = ['--key', join(work, 'studio.pub')]) => {
    const result = await splinterCli(
      [
        'launcher',
        'sync',
        '--api',
        apiUrl,
        '--token',
        token,
        '--realm',
        'eu-1',
        '--output',
        join(work, 'game'),
        '--plain-http',
        '--json',
        ...extra,
      ],
      player,
    );
    return { ...result, json: JSON.parse(result.stdout || '{}') as SyncJson & { error?: { code: string } } };
  };

  it('installs the head, stages a preload early, installs it from the cache once it is activated', async () => {
    const v1 = await push(trees.v1, '1');
    await operatorDo(['patch', 'activate', v1.id]);
    const v2 = await push(trees.v2, '2', ['--preload']);

    const first = await sync();
    expect(first.code, first.stderr).toBe(0);
    expect(first.json).toMatchObject({ action: 'installed', head: { id: v1.id, version: '1' } });
    expect(first.json.staged).toEqual([expect.objectContaining({ id: v2.id, version: '2' })]);
    expect(first.json.staged[0]!.transfer.bytes).toBeGreaterThan(0);
    expect(await snapshot(join(work, 'game'))).toEqual(await snapshot(trees.v1));

    const again = await sync();
    expect(again.json.action).toBe('up-to-date');
    expect(again.json.staged[0]!.transfer).toMatchObject({ requests: 0, bytes: 0 });
    // The second round revalidated the view it kept: the API answered 304, no view was sent.
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    expect(metrics).toMatch(/route="\/launcher\/realms\/:realm",method="GET",status="304"\} [1-9]/);

    await operatorDo(['patch', 'activate', v2.id]);
    // Released: the key comes from the API, the ciphertext from the cache: nothing left to download.
    const released = await sync();
    expect(released.code, released.stderr).toBe(0);
    expect(released.json).toMatchObject({
      action: 'installed',
      head: { id: v2.id },
      transfer: { requests: 0, bytes: 0 },
    });
    expect(await snapshot(join(work, 'game'))).toEqual(await snapshot(trees.v2));

    await operatorDo(['patch', 'rollback', '--realm', 'eu-1']);
    const rolledBack = await sync();
    expect(rolledBack.json).toMatchObject({
      action: 'installed',
      head: { id: v1.id },
      transfer: { requests: 0, bytes: 0 },
    });
    expect(await snapshot(join(work, 'game'))).toEqual(await snapshot(trees.v1));
  }, 180_000);

  it('refuses a head signed by no trusted key and leaves the installed folder as it was', async () => {
    const before = await snapshot(join(work, 'game'));
    const v3 = await push(trees.v2, '3');
    await operatorDo(['patch', 'activate', v3.id]);
    await writeKeyPair(join(work, 'stranger'), await generateKeyPair('studio'));
    const refused = await sync(api.url, ['--key', join(work, 'stranger.pub')]);
    expect(refused.code).toBe(5);
    expect(refused.json.error?.code).toBe('SIGNATURE_UNTRUSTED');
    expect(await snapshot(join(work, 'game'))).toEqual(before);
    expect((await readdir(work)).filter((n) => n.startsWith('.splinter-staging'))).toEqual([]);
  }, 60_000);

  it('says clearly when the API refuses the token', async () => {
    const refused = await splinterCli(
      [
        'launcher',
        'sync',
        '--api',
        api.url,
        '--token',
        `${token.slice(0, -3)}abc`,
        '--realm',
        'eu-1',
        '--output',
        join(work, 'game'),
        '--key',
        join(work, 'studio.pub'),
      ],
      player,
    );
    expect(refused.stderr).toMatch(/^splinter: UNAUTHENTICATED: /);
    expect(refused.code).toBe(6);
  }, 60_000);

  it("keeps the player's files across updates and refuses to overwrite one", async () => {
    const game = join(work, 'game');
    const installed = await sync();
    expect(installed.code, installed.stderr).toBe(0);
    expect(await snapshot(game)).toEqual(await snapshot(trees.v2));
    // What a player, the game and a mod loader leave in the folder.
    await mkdir(join(game, 'saves'), { recursive: true });
    await writeFile(join(game, 'saves', 'slot1.sav'), 'level 12\n');
    await writeFile(join(game, 'settings.cfg'), 'fov=100\n');
    await writeFile(join(game, 'data', 'user-mod.pak'), 'a mod\n');
    await mkdir(join(game, 'BepInEx', 'plugins'), { recursive: true });
    await writeFile(join(game, 'BepInEx', 'plugins', 'minimap.dll'), 'MZ\n');
    await symlink('saves/slot1.sav', join(game, 'latest.sav'));
    const players = {
      BepInEx: 'dir',
      'BepInEx/plugins': 'dir',
      'BepInEx/plugins/minimap.dll': expect.stringMatching(/^file /),
      'data/user-mod.pak': expect.stringMatching(/^file /),
      'latest.sav': 'link saves/slot1.sav',
      saves: 'dir',
      'saves/slot1.sav': expect.stringMatching(/^file /),
      'settings.cfg': expect.stringMatching(/^file /),
    };
    const theirs = await snapshot(game);

    // An update that removes and changes files of its own keeps every one of the player's.
    const v4 = await push(trees.v1, '4');
    await operatorDo(['patch', 'activate', v4.id]);
    // With the automatic cache limit at one version: what v1-v3 alone needed leaves the cache.
    const updated = await sync(api.url, ['--key', join(work, 'studio.pub'), '--keep-versions', '1']);
    expect(updated.code, updated.stderr).toBe(0);
    expect(updated.json.action).toBe('installed');
    const cache = (updated.json as { cache?: { before: number; after: number; keep: number } }).cache;
    console.log('launcher cache (bytes on disk) before/after the automatic prune:', cache);
    expect(cache?.keep).toBe(1);
    expect(cache!.after).toBeLessThan(cache!.before);
    const after = await snapshot(game);
    expect(after).toEqual({ ...(await snapshot(trees.v1)), ...players });
    for (const path of Object.keys(players)) expect(after[path], path).toEqual(theirs[path]);

    // An update that ships a file where the player has one is refused, and nothing changes.
    const clash = join(work, 'clash');
    await cp(trees.v1, clash, { recursive: true });
    await writeFile(join(clash, 'settings.cfg'), 'fov=90\n');
    const v5 = await push(clash, '5');
    await operatorDo(['patch', 'activate', v5.id]);
    const refused = await sync();
    expect(refused.code).toBe(7);
    expect(refused.json.error?.code).toBe('FILE_NOT_OWNED');
    expect(refused.stderr).toMatch(
      /^splinter: FILE_NOT_OWNED: the update would overwrite settings\.cfg, which the launcher did not install/,
    );
    expect(await snapshot(game)).toEqual(after);

    // Nothing a version ships may land under the paths players own.
    const intruder = join(work, 'intruder');
    await cp(trees.v1, intruder, { recursive: true });
    await mkdir(join(intruder, 'saves'));
    await writeFile(join(intruder, 'saves', 'default.sav'), 'new game\n');
    const v6 = await push(intruder, '6');
    await operatorDo(['patch', 'activate', v6.id]);
    const never = await sync();
    expect(never.code).toBe(7);
    expect(never.stderr).toMatch(
      /^splinter: FILE_NOT_OWNED: this version ships saves\/default\.sav, under saves\/, which the launcher never touches/,
    );
    expect(await snapshot(game)).toEqual(after);
  }, 240_000);
});

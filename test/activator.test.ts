import { spawn } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, writeKeyPair } from '@splintertree/sign';
import {
  type FreshDatabase,
  freshDatabase,
  type RunningRegistry,
  startRegistry,
} from '@splintertree/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, tempDir } from '../packages/pack/test/helpers.js';
import { CLI, captureOutput, SAMPLE, SAMPLE_MOD, scrubbedEnv, splinterCli } from './support.js';

interface RoundJson {
  head: { version: string } | null;
  installed: Array<{ name: string; downloaded: number }>;
  kept: Array<{ name: string }>;
  removed: string[];
}

describe('splinter activator: the mods of the active patch follow activation and rollback', () => {
  let work: string;
  let registry: RunningRegistry;
  let database: FreshDatabase;
  let env: Record<string, string>;
  let radar: string;
  const ids: Record<string, string> = {};
  const mods = () => join(work, 'mods');

  beforeAll(async () => {
    work = await tempDir('activator');
    registry = await startRegistry();
    database = await freshDatabase('activator', { migrate: true });
    env = {
      SPLINTER_HOME: join(work, 'home'),
      DATABASE_URL: database.url,
      SPLINTERTREE_PATCH_REGISTRY: registry.host,
      SPLINTERTREE_MOD_REGISTRY: registry.host,
      COSIGN_PASSWORD: 'studio',
      USER: 'release-bot',
    };
    await writeKeyPair(join(work, 'studio'), await generateKeyPair('studio'));
    // The realm trusts the studio's key for mods (checked at push --mod and at activate).
    const trust = await splinterCli(
      ['realm', 'trust', 'set', '--realm', 'eu-1', '--key', join(work, 'studio.pub')],
      env,
    );
    expect(trust.code, trust.stderr).toBe(0);
    radar = join(work, 'radar');
    await mkdir(join(radar, 'scripts'), { recursive: true });
    await writeFile(join(radar, 'scripts', 'radar.lua'), 'print("radar")\n');
  });
  afterAll(async () => {
    await database?.drop();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const cli = async (args: string[]) => {
    const result = await splinterCli([...args, '--json'], env);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  };
  const signed = () => ['--key', join(work, 'studio.key')];
  const trusted = () => ['--key', join(work, 'studio.pub')];
  const runOnce = async () => {
    const result = await splinterCli(
      ['activator', 'run', '--realm', 'eu-1', '--output', mods(), '--plain-http', '--json', ...trusted()],
      env,
    );
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as RoundJson;
  };

  const pushMod = async (dir: string, name: string, version = '1', extra: string[] = []) =>
    (
      await cli([
        'mod',
        'push',
        dir,
        '--name',
        name,
        '--version',
        version,
        ...signed(),
        '--plain-http',
        ...extra,
      ])
    ).digest as string;
  const pushPatch = async (version: string, extra: string[]) =>
    (await cli(['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', version, '--plain-http', ...extra]))
      .id as string;

  it('installs the pinned mods, keeps unchanged ones, removes unpinned ones on rollback', async () => {
    const minimap = await pushMod(SAMPLE_MOD, 'minimap');
    await pushMod(radar, 'radar');
    const mod = (name: string) => ['--mod', `${registry.host}/mods/${name}:1`];
    ids.v1 = await pushPatch('1', mod('minimap'));
    ids.v2 = await pushPatch('2', ['--parent', '1', ...mod('minimap'), ...mod('radar')]);

    expect(await runOnce()).toMatchObject({ head: null, installed: [], removed: [] });

    await cli(['patch', 'activate', ids.v1, '--plain-http']);
    const first = await runOnce();
    expect(first.installed.map((m) => m.name)).toEqual(['minimap']);
    expect(await snapshot(join(mods(), 'minimap'))).toEqual(await snapshot(SAMPLE_MOD));
    expect(minimap).toMatch(/^sha256:/);

    await cli(['patch', 'activate', ids.v2, '--plain-http']);
    const second = await runOnce();
    expect(second).toMatchObject({ head: { version: '2' }, kept: [{ name: 'minimap' }], removed: [] });
    expect(second.installed.map((m) => m.name)).toEqual(['radar']);
    expect((await readdir(mods())).sort()).toEqual(['minimap', 'radar']);

    await cli(['patch', 'rollback', '--realm', 'eu-1', '--plain-http']);
    const third = await runOnce();
    expect(third).toMatchObject({ head: { version: '1' }, installed: [], removed: ['radar'] });
    expect(await readdir(mods())).toEqual(['minimap']);
  }, 120_000);

  /** `activator run --watch` as a child process: its rounds (JSON lines) and its exit. */
  const startWatch = () => {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'activator',
        'run',
        '--realm',
        'eu-1',
        '--output',
        mods(),
        '--watch',
        '--plain-http',
        '--json',
        ...trusted(),
      ],
      { env: scrubbedEnv(env), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const output = captureOutput(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const rounds = () =>
      output
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as RoundJson);
    return {
      child,
      exited,
      stderr: () => output.stderr(),
      async round(count: number): Promise<RoundJson> {
        const deadline = Date.now() + 30_000;
        while (rounds().length < count) {
          if (Date.now() > deadline || child.exitCode !== null)
            throw new Error(`no round ${count}: ${output.stderr()}`);
          await sleep(50);
        }
        return rounds()[count - 1]!;
      },
    };
  };

  it('with --watch, follows an activation the moment it commits', async () => {
    const watch = startWatch();
    try {
      expect(await watch.round(1)).toMatchObject({ head: { version: '1' } });
      await cli(['patch', 'activate', ids.v2!, '--plain-http']);
      const followed = await watch.round(2);
      expect(followed).toMatchObject({ head: { version: '2' }, installed: [{ name: 'radar' }] });
      expect((await readdir(mods())).sort()).toEqual(['minimap', 'radar']);
    } finally {
      watch.child.kill('SIGTERM');
    }
    expect(await watch.exited, watch.stderr()).toBe(0);
  }, 120_000);

  it('with --watch, stops with DATABASE_ERROR when its LISTEN connection is lost, never silently stale', async () => {
    const watch = startWatch();
    try {
      await watch.round(1);
      const admin = new pg.Client({ connectionString: database.url });
      await admin.connect();
      try {
        await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`,
        );
      } finally {
        await admin.end();
      }
      expect(await watch.exited).toBe(9);
      expect(watch.stderr()).toMatch(/^splinter: DATABASE_ERROR: /m);
    } finally {
      watch.child.kill('SIGTERM');
    }
  }, 120_000);

  it('refuses a head that pins two mods of one name, changing nothing', async () => {
    const before = await snapshot(mods());
    await pushMod(radar, 'radar', '2', ['--registry', `${registry.host}/other`]);
    const v3 = await pushPatch('3', [
      '--parent',
      ids.v2!,
      '--mod',
      `${registry.host}/mods/radar:1`,
      '--mod',
      `${registry.host}/other/radar:2`,
    ]);
    await cli(['patch', 'activate', v3, '--plain-http']);
    const refused = await splinterCli(
      ['activator', 'run', '--realm', 'eu-1', '--output', mods(), '--plain-http', ...trusted()],
      env,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^splinter: INVALID_ARGUMENT: .*two mods named radar/);
    expect(await snapshot(mods())).toEqual(before);
  }, 120_000);
});

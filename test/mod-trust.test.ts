import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, writeKeyPair } from '@splintertree/sign';
import {
  type FreshDatabase,
  freshDatabase,
  type RunningRegistry,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLE, SAMPLE_MOD, splinterCli, tempDir } from './support.js';

interface Json {
  [key: string]: unknown;
  error?: { code: string; message: string; details?: Record<string, unknown> };
}

describe("a patch's mods are checked against its realm's trust at push and at activation", () => {
  let work: string;
  let registry: RunningRegistry;
  let database: FreshDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    work = await tempDir('mod-trust');
    registry = await startRegistry();
    database = await freshDatabase('modtrust', { migrate: true });
    env = {
      SPLINTER_HOME: join(work, 'home'),
      DATABASE_URL: database.url,
      SPLINTERTREE_PATCH_REGISTRY: registry.host,
      SPLINTERTREE_MOD_REGISTRY: registry.host,
      COSIGN_PASSWORD: 'pw',
      SPLINTER_ACTOR: 'release-bot',
    };
    for (const name of ['studio', 'rogue', 'next']) {
      await writeKeyPair(join(work, name), await generateKeyPair('pw'));
    }
  });
  afterAll(async () => {
    await database?.drop();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const cli = async (args: string[]) => {
    const remote =
      args[0] === 'mod' || args[1] === 'push' || args[1] === 'activate' || args[1] === 'rollback';
    const result = await splinterCli([...args, ...(remote ? ['--plain-http'] : []), '--json'], env);
    return { ...result, json: JSON.parse(result.stdout || '{}') as Json };
  };
  const ok = async (args: string[]) => {
    const result = await cli(args);
    expect(result.code, result.stderr).toBe(0);
    return result.json;
  };
  const mod = (name: string) => ['--mod', `${registry.host}/mods/${name}:1`];
  const push = (version: string, extra: string[]) =>
    cli(['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', version, ...extra]);
  const versions = async () =>
    ((await ok(['patch', 'list', '--realm', 'eu-1'])).patches as { version: string }[]).map((p) => p.version);
  const head = async () =>
    ((await ok(['realm', 'show', 'eu-1'])).head as { version: string } | null)?.version ?? null;
  const refused = (result: { code: number; json: Json }, reason: string) => {
    expect(result.code).toBe(5);
    expect(result.json.error?.code).toBe('MOD_UNTRUSTED');
    if (reason) expect(result.json.error?.details?.reason).toBe(reason);
  };

  it('refuses unsigned and untrusted mods before anything is registered, and again at activation', async () => {
    for (const [name, key] of [
      ['minimap', 'studio'],
      ['radar', 'rogue'],
      ['unsigned', undefined],
    ] as const) {
      await ok([
        'mod',
        'push',
        SAMPLE_MOD,
        '--name',
        name,
        '--version',
        '1',
        ...(key ? ['--key', join(work, `${key}.key`)] : []),
      ]);
    }
    await ok(['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '0']);

    // No policy yet: a patch with mods is refused, one without is not.
    const noPolicy = await push('1', mod('minimap'));
    refused(noPolicy, '');
    expect(noPolicy.stderr).toMatch(
      /^splinter: MOD_UNTRUSTED: realm eu-1 trusts no mod keys and none were given\nsplinter: hint: set them with splinter realm trust set --realm eu-1 --key PUB, or pass --mod-key PUB\n/,
    );

    const set = await ok(['realm', 'trust', 'set', '--realm', 'eu-1', '--key', join(work, 'studio.pub')]);
    expect(set).toMatchObject({ realm: 'eu-1', setBy: 'release-bot', keys: [{ keyId: expect.any(String) }] });
    const shown = await ok(['realm', 'trust', 'show', '--realm', 'eu-1']);
    expect(shown.trust).toEqual(set);

    refused(await push('1', mod('unsigned')), 'SIGNATURE_MISSING');
    const rogue = await push('1', mod('radar'));
    refused(rogue, 'SIGNATURE_UNTRUSTED');
    expect(rogue.stderr).toContain(`mod ${registry.host}/mods/radar@sha256:`);
    expect(await versions()).toEqual(['0']);

    // Trusted by the realm: accepted and activated.
    await ok([...['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1'], ...mod('minimap')]);
    await ok(['patch', 'activate', '1', '--realm', 'eu-1']);
    expect(await head()).toBe('1');

    // Keys on the command line replace the realm's for that push, but activation checks the realm's.
    await ok([
      ...['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '2', '--mod-key', join(work, 'rogue.pub')],
      ...mod('radar'),
    ]);
    refused(await cli(['patch', 'activate', '2', '--realm', 'eu-1']), 'SIGNATURE_UNTRUSTED');
    refused(await cli(['patch', 'activate', '2', '--realm', 'eu-1', '--force']), 'SIGNATURE_UNTRUSTED');
    expect(await head()).toBe('1');
    const trustFile = join(work, 'rogue.trust');
    await writeFile(trustFile, '# the radar team\nrogue.pub\n');
    await ok(['patch', 'activate', '2', '--realm', 'eu-1', '--mod-trust', trustFile]);
    expect(await head()).toBe('2');

    // The realm rotates to a new key: a draft pushed under the old one no longer goes live.
    await ok([...['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '3'], ...mod('minimap')]);
    await ok(['realm', 'trust', 'set', '--realm', 'eu-1', '--key', join(work, 'next.pub')]);
    refused(await cli(['patch', 'activate', '3', '--realm', 'eu-1']), 'SIGNATURE_UNTRUSTED');
    expect(await head()).toBe('2');
    // A rollback puts its target live again: version 1's mod, signed by the retired key, is refused too.
    refused(await cli(['patch', 'rollback', '--realm', 'eu-1']), 'SIGNATURE_UNTRUSTED');
    expect(await head()).toBe('2');
    await ok(['patch', 'rollback', '--realm', 'eu-1', '--mod-key', join(work, 'studio.pub')]);
    expect(await head()).toBe('1');
    const history = await ok(['patch', 'history', '--realm', 'eu-1']);
    expect((history.releases as { action: string }[]).map((r) => r.action)).toEqual([
      'activate',
      'activate',
      'rollback',
    ]);

    const cleared = await ok(['realm', 'trust', 'clear', '--realm', 'eu-1']);
    expect(cleared).toEqual({ realm: 'eu-1', cleared: true });
    expect((await ok(['realm', 'trust', 'show', '--realm', 'eu-1'])).trust).toBeNull();
    expect((await cli(['realm', 'trust', 'show', '--realm', 'nope'])).code).toBe(3);
  }, 180_000);
});

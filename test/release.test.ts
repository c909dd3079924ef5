import { cp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, writeKeyPair } from '@splintertree/sign';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../packages/pack/test/helpers.js';
import { SAMPLE, SAMPLE_MOD, splinterCli } from './support.js';

async function splinter(args: string[], env: Record<string, string>) {
  const result = await splinterCli([...args, '--json'], { USER: 'ci-operator', ...env });
  return {
    ...result,
    json: JSON.parse(result.stdout || '{}') as Record<string, unknown> & { error?: { code: string } },
  };
}

for (const backend of ['PostgreSQL (DATABASE_URL)', 'embedded PGlite'] as const) {
  describe(`release management from the CLI on ${backend}`, () => {
    let work: string;
    let database: FreshDatabase | undefined;
    let env: Record<string, string>;
    beforeAll(async () => {
      work = await tempDir('release');
      env = { SPLINTER_HOME: join(work, 'home'), COSIGN_PASSWORD: 'mods' };
      await writeKeyPair(join(work, 'mods'), await generateKeyPair('mods'));
      if (backend.startsWith('PostgreSQL')) {
        database = await freshDatabase('cli', { migrate: true });
        env.DATABASE_URL = database.url;
      }
    });
    afterAll(async () => {
      await database?.drop();
      await rm(work, { recursive: true, force: true });
    });

    it('registers on push, activates, bundles mods, rolls back and keeps the history', async () => {
      const mod = await splinter(
        ['mod', 'push', SAMPLE_MOD, '--name', 'minimap', '--version', '1', '--key', join(work, 'mods.key')],
        env,
      );
      expect(mod.code, mod.stderr).toBe(0);
      // The realm trusts the mod key: its patches may bundle the mod (mod-trust.test.ts covers refusals).
      const trust = await splinter(
        ['realm', 'trust', 'set', '--realm', 'eu-1', '--key', join(work, 'mods.pub')],
        env,
      );
      expect(trust.code, trust.stderr).toBe(0);
      const v1 = await splinter(['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.0.0'], env);
      expect(v1.code, v1.stderr).toBe(0);
      expect(v1.json).toMatchObject({ id: expect.stringMatching(/^\d+$/), status: 'draft', parent: null });
      const activated = await splinter(['patch', 'activate', String(v1.json.id)], env);
      expect(activated.json).toMatchObject({
        action: 'activate',
        fromHead: null,
        toHead: v1.json.id,
        actor: 'ci-operator',
      });

      const v2 = await splinter(
        ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.1.0', '--mod', 'mods/minimap:1'],
        env,
      );
      expect(v2.code, v2.stderr).toBe(0);
      expect(v2.json.parent).toBe(v1.json.id);
      const notAMod = await splinter(
        ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.2.0', '--mod', 'patches/eu-1:1.0.0'],
        env,
      );
      expect(notAMod.code).toBe(4);
      expect(notAMod.stderr).toMatch(
        /^splinter: UNSUPPORTED_MEDIA_TYPE: bundled mod patches\/eu-1:1\.0\.0 is .*, not a mod/,
      );
      const duplicate = await splinter(
        ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.1.0'],
        env,
      );
      expect(duplicate.code).toBe(7);
      expect(duplicate.json.error?.code).toBe('PATCH_EXISTS');

      // A re-run CI job pushing the same version with the same content succeeds and says so.
      const blobs = join(env.SPLINTER_HOME!, 'store', 'blobs', 'sha256');
      const stored = await readdir(blobs);
      const again = await splinter(
        ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.1.0', '--mod', 'mods/minimap:1'],
        env,
      );
      expect(again.code, again.stderr).toBe(0);
      expect(again.json).toMatchObject({
        id: v2.json.id,
        digest: v2.json.digest,
        parent: v1.json.id,
        alreadyPushed: true,
        transfer: { transferred: 0, bytes: 0 },
      });
      // Other content under that version is refused before any of it is stored.
      const changed = join(work, 'changed');
      await cp(SAMPLE, changed, { recursive: true });
      await writeFile(join(changed, 'extra.txt'), 'not in 1.1.0\n');
      const other = await splinter(
        ['patch', 'push', changed, '--realm', 'eu-1', '--version', '1.1.0', '--mod', 'mods/minimap:1'],
        env,
      );
      expect(other.code).toBe(7);
      expect(other.stderr).toMatch(
        /^splinter: PATCH_EXISTS: realm eu-1 already has a patch version 1\.1\.0 with other content/,
      );
      expect((await readdir(blobs)).sort()).toEqual(stored.sort());
      // Without --parent a push builds on the head, and says so when newer drafts exist.
      const ahead = await splinter(['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.3.0'], env);
      expect(ahead.json).toMatchObject({ status: 'draft', parent: v1.json.id });
      expect(ahead.stderr).toContain('eu-1 has drafts newer than its head (1.1.0)');
      expect(ahead.stderr).toContain('\nsplinter: hint: pass --parent to build on a draft\n');

      await splinter(['patch', 'activate', '1.1.0', '--realm', 'eu-1'], env);
      const shown = await splinter(['realm', 'show', 'eu-1'], env);
      expect((shown.json.chain as Array<{ version: string }>).map((p) => p.version)).toEqual([
        '1.0.0',
        '1.1.0',
      ]);
      expect(shown.json.mods).toEqual([
        { reference: `mods/minimap@${mod.json.digest}`, digest: mod.json.digest },
      ]);

      const sideline = await splinter(
        ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1.0.1', '--parent', '1.0.0'],
        env,
      );
      const refused = await splinter(['patch', 'activate', String(sideline.json.id)], env);
      expect(refused.code).toBe(7);
      expect(refused.json.error).toMatchObject({
        code: 'HEAD_CONFLICT',
        details: { reason: 'not-descendant' },
        hint: 'pass --force to activate it anyway',
      });
      expect(refused.stderr).toMatch(
        /does not descend from the head \d+ of eu-1\nsplinter: hint: pass --force/,
      );

      const back = await splinter(['patch', 'rollback', '--realm', 'eu-1'], env);
      expect(back.json).toMatchObject({ action: 'rollback', fromHead: v2.json.id, toHead: v1.json.id });
      const afterRollback = await splinter(['realm', 'show', 'eu-1'], env);
      expect(afterRollback.json.mods).toEqual([]);

      const history = await splinter(['patch', 'history', '--realm', 'eu-1'], env);
      expect((history.json.releases as Array<{ action: string }>).map((r) => r.action)).toEqual([
        'activate',
        'activate',
        'rollback',
      ]);
      const list = await splinter(['patch', 'list', '--realm', 'eu-1'], env);
      expect(
        (list.json.patches as Array<{ version: string; status: string }>).map((p) => [p.version, p.status]),
      ).toEqual([
        ['1.0.0', 'active'],
        ['1.1.0', 'superseded'],
        ['1.3.0', 'draft'],
        ['1.0.1', 'draft'],
      ]);
    }, 300_000); // PGlite opens per command: on a loaded 2-core machine the run takes minutes
  });
}

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServedApi, serveApi } from './serve.js';
import { splinterCli } from './support.js';

/**
 * Launcher tokens kept out of the command line (where `ps` shows them to every user): from
 * --token-file or SPLINTER_TOKEN, against `splinter serve` on PostgreSQL. An unknown patch (404) or
 * realm proves that the API accepted the token; a wrong one is refused (401).
 */
describe('launcher tokens from a file or the environment', () => {
  let work: string;
  let database: FreshDatabase;
  let api: ServedApi;
  let token: string;
  let tokenFile: string;
  let player: Record<string, string>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'splinter-token-'));
    database = await freshDatabase('launcher_token', { migrate: true });
    const operator = {
      SPLINTER_HOME: join(work, 'operator'),
      DATABASE_URL: database.url,
      SPLINTER_KEK: randomBytes(32).toString('base64'),
    };
    const created = await splinterCli(['token', 'create', '--realm', 'eu-1', '--json'], operator);
    token = (JSON.parse(created.stdout) as { token: string }).token;
    tokenFile = join(work, 'token');
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    api = await serveApi(operator);
    player = { SPLINTER_HOME: join(work, 'player'), SPLINTER_TOKEN: '' };
  }, 60_000);
  afterAll(async () => {
    await api?.stop();
    await database?.drop();
    await rm(work, { recursive: true, force: true });
  });

  const unlock = (args: string[], env: Record<string, string> = player) =>
    splinterCli(['patch', 'unlock', '999', '--api', api.url, ...args], env);

  it('patch unlock reads the token from --token-file, then from SPLINTER_TOKEN', async () => {
    const fromFile = await unlock(['--token-file', tokenFile]);
    expect(fromFile.stderr).toMatch(/^splinter: PATCH_UNKNOWN: /);
    const fromEnvironment = await unlock([], { ...player, SPLINTER_TOKEN: token });
    expect(fromEnvironment.stderr).toMatch(/^splinter: PATCH_UNKNOWN: /);
    const wrongFile = join(work, 'wrong-token');
    await writeFile(wrongFile, `${token.slice(0, -3)}abc`);
    expect((await unlock(['--token-file', wrongFile])).stderr).toMatch(/^splinter: UNAUTHENTICATED: /);
    // a flag wins over the environment
    expect((await unlock(['--token-file', wrongFile], { ...player, SPLINTER_TOKEN: token })).stderr).toMatch(
      /^splinter: UNAUTHENTICATED: /,
    );
  }, 60_000);

  it('launcher sync reads it the same way', async () => {
    const sync = (args: string[], env: Record<string, string>) =>
      splinterCli(
        [
          'launcher',
          'sync',
          '--api',
          api.url,
          '--realm',
          'eu-1',
          '--output',
          join(work, 'game'),
          '--insecure-skip-verify',
          ...args,
        ],
        env,
      );
    expect((await sync(['--token-file', tokenFile], player)).stderr).toMatch(/^splinter: REALM_UNKNOWN: /);
    expect((await sync([], { ...player, SPLINTER_TOKEN: token })).stderr).toMatch(
      /^splinter: REALM_UNKNOWN: /,
    );
    expect((await sync([], player)).stderr).toMatch(
      /^splinter: INVALID_ARGUMENT: a launcher token is needed/,
    );
  }, 60_000);

  it('refuses two tokens, no token, an empty file and a file far too large to be a token', async () => {
    const both = await unlock(['--token', token, '--token-file', tokenFile]);
    expect(both.stderr).toMatch(/^splinter: INVALID_ARGUMENT: give --token or --token-file, not both/);
    expect(both.code).toBe(2);
    expect((await unlock([])).stderr).toMatch(/^splinter: INVALID_ARGUMENT: a launcher token is needed/);
    const empty = join(work, 'empty');
    await writeFile(empty, '\n');
    expect((await unlock(['--token-file', empty])).stderr).toMatch(/INVALID_ARGUMENT: .* is empty/);
    const large = join(work, 'large');
    await writeFile(large, 'x'.repeat(10_000));
    expect((await unlock(['--token-file', large])).stderr).toMatch(
      /INVALID_ARGUMENT: .* larger than 4096 bytes/,
    );
    const missing = await unlock(['--token-file', join(work, 'missing')]);
    expect(missing.stderr).toMatch(/INVALID_ARGUMENT: .* cannot be read/);
  }, 60_000);

  it('documents --token-file and SPLINTER_TOKEN in --help', async () => {
    for (const command of [
      ['patch', 'unlock'],
      ['launcher', 'sync'],
    ]) {
      const help = await splinterCli([...command, '--help'], player);
      expect(help.stdout).toContain('--token-file <file>');
      expect(help.stdout).toContain('SPLINTER_TOKEN');
      expect(help.stdout).toMatch(
        /--token <token>\s+the launcher token itself: other users can read\s+it\s+in\s+ps/,
      );
    }
  });
});

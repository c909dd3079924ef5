import { userInfo } from 'node:os';
import { join } from 'node:path';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, type CliResult, run, SAMPLE, tempDir } from './support.js';

// biome-ignore lint/suspicious/noExplicitAny: a command's --json output, read field by field in assertions
type Json = any;

/** Runs the CLI with exactly `env` (nothing inherited), as a container or CI job with a bare environment. */
async function bare(args: string[], env: Record<string, string>): Promise<CliResult & { json: Json }> {
  let result: CliResult;
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env });
    result = { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    result = { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
  let json: Json;
  try {
    json = JSON.parse(result.stdout);
  } catch {
    json = undefined;
  }
  return { ...result, json };
}

describe('CLI habits of CI jobs and containers', () => {
  let work: string;
  let database: FreshDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    work = await tempDir('habits');
    database = await freshDatabase('habits');
    // No USER, no LOGNAME, no HOME: only what the command needs.
    env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      SPLINTER_HOME: join(work, 'home'),
      DATABASE_URL: database.url,
    };
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('takes the actor from the OS user name when USER and LOGNAME are unset', async () => {
    const pushed = await bare(['patch', 'push', SAMPLE, '--realm', 'ci', '--version', '1', '--json'], env);
    expect(pushed.code, pushed.stderr).toBe(0);
    const activated = await bare(['patch', 'activate', '1', '--realm', 'ci', '--json'], env);
    expect(activated.code, activated.stderr).toBe(0);
    expect(activated.json.actor).toBe(userInfo().username);

    await bare(['patch', 'push', SAMPLE, '--realm', 'ci', '--version', '2', '--json'], env);
    const byVariable = await bare(['patch', 'activate', '2', '--realm', 'ci', '--json'], {
      ...env,
      SPLINTER_ACTOR: 'release-bot',
      USER: 'ignored',
    });
    expect(byVariable.json.actor).toBe('release-bot');
    const byFlag = await bare(['patch', 'rollback', '--realm', 'ci', '--actor', 'alice', '--json'], {
      ...env,
      SPLINTER_ACTOR: 'release-bot',
    });
    expect(byFlag.json.actor).toBe('alice');
    const history = await bare(['patch', 'history', '--realm', 'ci', '--json'], env);
    expect(history.json.releases.map((r: { actor: string }) => r.actor)).toEqual([
      userInfo().username,
      'release-bot',
      'alice',
    ]);
  });
});

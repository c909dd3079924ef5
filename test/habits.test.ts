import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, loadPrivateKey, writeKeyPair } from '@splintertree/sign';
import { type FreshDatabase, freshDatabase, requireTool } from '@splintertree/testkit';
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
    database = await freshDatabase('habits', { migrate: true });
    // No USER, no LOGNAME, no HOME: only what the command needs.
    env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      SPLINTER_HOME: join(work, 'home'),
      DATABASE_URL: database.url,
    };
  });
  afterAll(async () => {
    await database?.drop();
    await rm(work, { recursive: true, force: true });
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

  it('answers usage errors in one line and a hint, and in JSON under --json', async () => {
    const unknown = await bare(['patch', 'activate', '1', '--forc'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe(
      "splinter: USAGE: unknown option '--forc' (Did you mean --force?)\nSee 'splinter patch activate --help'.\n",
    );
    expect(unknown.stdout).toBe('');

    const unknownJson = await bare(['patch', 'activate', '1', '--bogus', '--json'], env);
    expect(unknownJson.code).toBe(2);
    expect(unknownJson.json).toEqual({
      error: { code: 'USAGE', message: "unknown option '--bogus'", details: { reason: 'unknownOption' } },
    });
    const missing = await bare(['patch', 'activate', '--json'], env);
    expect(missing.code).toBe(2);
    expect(missing.json.error).toMatchObject({ code: 'USAGE', details: { reason: 'missingArgument' } });
    expect(missing.json.error.message).toContain("missing required argument 'id'");
    const mandatory = await bare(['patch', 'list', '--json'], env);
    expect(mandatory.json.error).toMatchObject({
      code: 'USAGE',
      details: { reason: 'missingMandatoryOptionValue' },
    });
    const command = await bare(['pacth', '--json'], env);
    expect(command.json.error).toMatchObject({ code: 'USAGE', details: { reason: 'unknownCommand' } });
    expect(command.stderr.split('\n')[0]).toBe(
      "splinter: USAGE: unknown command 'pacth' (Did you mean patch?)",
    );
    const group = await bare(['patch', '--json'], env);
    expect(group.code).toBe(2);
    expect(group.json.error).toMatchObject({ code: 'USAGE', message: 'missing command' });
    // Help and --version still succeed.
    expect((await bare(['patch', 'list', '--help'], env)).code).toBe(0);
    expect((await bare(['--version'], env)).code).toBe(0);
  });

  it('ends quietly when the reader of its output goes away (EPIPE)', async () => {
    const pushed = await bare(['patch', 'push', SAMPLE, '--realm', 'pipe', '--version', '1'], env);
    expect(pushed.code, pushed.stderr).toBe(0);
    // The command starts only once our end of its stdout pipe is closed: every write it makes fails.
    const child = spawn(
      'sh',
      ['-c', 'read go && exec "$0" "$@"', process.execPath, CLI, 'inspect', 'patches/pipe:1'],
      {
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const closed = once(child.stdout, 'close');
    child.stdout.destroy();
    await closed;
    child.stdin.end('go\n');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('answers list commands on an unknown realm as realm show does', async () => {
    const shown = await bare(['realm', 'show', 'nope', '--json'], env);
    expect(shown.code).toBe(3);
    for (const args of [
      ['patch', 'list', '--realm', 'nope'],
      ['patch', 'history', '--realm', 'nope'],
    ]) {
      const listed = await bare([...args, '--json'], env);
      expect(listed.code, args.join(' ')).toBe(3);
      expect(listed.json).toEqual(shown.json);
    }
    // A known realm with no releases yet is not unknown.
    await bare(['patch', 'push', SAMPLE, '--realm', 'quiet', '--version', '1'], env);
    const empty = await bare(['patch', 'history', '--realm', 'quiet', '--json'], env);
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.json.releases).toEqual([]);
  });

  it('prints every timestamp as RFC 3339', async () => {
    const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
    const list = await bare(['patch', 'list', '--realm', 'ci', '--json'], env);
    expect(list.json.patches.length).toBeGreaterThan(0);
    for (const p of list.json.patches) {
      expect(p.createdAt).toMatch(rfc3339);
      expect(p.activatedAt).toMatch(rfc3339);
      expect(Math.abs(Date.parse(p.createdAt) - Date.now())).toBeLessThan(10 * 60_000);
    }
    const history = await bare(['patch', 'history', '--realm', 'ci', '--json'], env);
    for (const r of history.json.releases) expect(r.at).toMatch(rfc3339);
    const human = await bare(['patch', 'history', '--realm', 'ci'], env);
    for (const line of human.stdout.trim().split('\n')) expect(line.split('\t').at(-1)).toMatch(rfc3339);
    const shown = await bare(['realm', 'show', 'ci', '--json'], env);
    expect(shown.json.head.createdAt).toMatch(rfc3339);
    const token = await bare(['token', 'create', '--realm', 'ci', '--json'], env);
    expect(token.code, token.stderr).toBe(0);
    const tokens = await bare(['token', 'list', '--json'], env);
    expect(tokens.code, tokens.stderr).toBe(0);
    expect(JSON.stringify(tokens.json)).toMatch(/"createdAt":"\d{4}-\d{2}-\d{2}T[^"]*Z"/);
  });

  /** Resolves once `stream` has carried `text` (the event a test waits for, never a sleep). */
  function waitFor(stream: NodeJS.ReadableStream, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let seen = '';
      const onData = (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes(text)) {
          stream.off('data', onData);
          resolve(seen);
        }
      };
      stream.on('data', onData);
      stream.once('end', () => reject(new Error(`stream ended before ${JSON.stringify(text)}: ${seen}`)));
    });
  }

  it('says it reads the key password from a pipe before waiting on it', async () => {
    await writeKeyPair(join(work, 'piped'), await generateKeyPair('from-a-pipe'));
    const child = spawn(
      process.execPath,
      [CLI, 'patch', 'push', SAMPLE, '--realm', 'piped', '--version', '1', '--key', join(work, 'piped.key')],
      { env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const exited = once(child, 'exit');
    // Nothing is written to stdin until the command has said what it waits for.
    const said = await waitFor(child.stderr, 'from standard input');
    expect(said).toContain(
      `splinter: reading the password for ${join(work, 'piped.key')} from standard input`,
    );
    expect(said).toContain('COSIGN_PASSWORD');
    child.stdin.end('from-a-pipe');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
  });

  it('prompts on the terminal before reading a password from it', async () => {
    // script(1) gives the command a real pseudo-terminal; what we write is what the user types.
    const script = requireTool('script', 'util-linux');
    const prefix = join(work, 'typed');
    const child = spawn(
      script,
      ['-qec', `"${process.execPath}" "${CLI}" key generate --output-key-prefix "${prefix}"`, '/dev/null'],
      {
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    const exited = once(child, 'exit');
    await waitFor(child.stdout, 'Enter password for private key: ');
    child.stdin.write('typed-secret\r');
    await waitFor(child.stdout, 'Enter password for private key again: ');
    child.stdin.write('typed-secret\r');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    const signer = await loadPrivateKey(await readFile(`${prefix}.key`, 'utf8'), 'typed-secret');
    expect(signer).toBeDefined();
  });

  it('prints progress lines with bytes, rate and ETA when stderr is a log, not a terminal', async () => {
    const tree = join(work, 'big');
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'world.pak'), randomBytes(12 * 1024 * 1024));
    // Every progress event past the interval prints; 0 makes the interval shorter than any push.
    const logged = { ...env, SPLINTER_PROGRESS_INTERVAL_MS: '0' };
    const pushed = await bare(
      ['mod', 'push', tree, '--name', 'big', '--version', '1', '--progress', 'plain', '--json'],
      logged,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.json.digest).toMatch(/^sha256:/); // stdout is still one JSON document
    const lines = pushed.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines.slice(0, -1)) {
      expect(line).toMatch(
        /^splinter: push big: [\d.]+ (B|KiB|MiB) of [\d.]+ (B|KiB|MiB)( \(\d+%\))?, [\d.]+ (B|KiB|MiB)\/s, ETA (\d+[smh][\dms]*|\?)$/,
      );
    }
    expect(lines.at(-1)).toMatch(/^splinter: push big: done, 12\.\d MiB in \d+s \([\d.]+ (KiB|MiB)\/s\)$/);

    // The default outside a terminal is plain; `none` and --json are silent.
    const quiet = await bare(
      ['mod', 'push', tree, '--name', 'big', '--version', '2', '--progress', 'none'],
      logged,
    );
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stderr).toBe('');
    const byDefault = await bare(['mod', 'push', tree, '--name', 'big', '--version', '3'], logged);
    expect(byDefault.stderr).toMatch(/^splinter: push big: /);
    const bad = await bare(
      ['mod', 'push', tree, '--name', 'big', '--version', '4', '--progress', 'fancy', '--json'],
      logged,
    );
    expect(bad.code).toBe(2);
    expect(bad.json.error).toMatchObject({ code: 'USAGE', details: { reason: 'invalidArgument' } });
  });
});

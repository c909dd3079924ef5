import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
import { CLI, captureOutput, SAMPLE_MOD, scrubbedEnv, splinterCli } from './support.js';

interface SyncJson {
  action: string;
  head: { id: string; version: string; digest: string } | null;
  release?: { sequence: string; expiresAt: string };
  error?: { code: string; message: string };
}

/**
 * A launcher API that lies: routes given in `lies` answer what the test stored, everything else is
 * passed to the real API. A man in the middle of plain-HTTP `serve`, or a compromised API host.
 */
async function startHostileApi(realUrl: string): Promise<{
  url: string;
  lies: Map<string, string>;
  stop(): Promise<void>;
}> {
  const lies = new Map<string, string>();
  const server: Server = createServer(async (request, response) => {
    const lie = lies.get(request.url ?? '');
    if (lie !== undefined) {
      response.writeHead(200, { 'content-type': 'application/json' }).end(lie);
      return;
    }
    const upstream = await fetch(`${realUrl}${request.url}`, {
      method: request.method,
      headers: { authorization: request.headers.authorization ?? '', accept: 'application/json' },
    });
    response
      .writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'text/plain' })
      .end(Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    lies,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function writeTree(root: string, version: string): Promise<void> {
  await mkdir(join(root, 'data'), { recursive: true });
  await writeFile(join(root, 'game.ini'), `[game]\nversion=${version}\n`);
  await writeFile(join(root, 'data', `zone-${version}.bin`), randomBytes(20_000));
}

describe('signed releases: a launcher trusts no unsigned word about which patch is current', () => {
  let work: string;
  let registry: RunningRegistry;
  let database: FreshDatabase;
  let api: ServedApi;
  let hostile: Awaited<ReturnType<typeof startHostileApi>>;
  let operator: Record<string, string>;
  let player: Record<string, string>;
  const tokens: Record<string, string> = {};
  const ids: Record<string, string> = {};
  const saved: Record<string, string> = {};
  const game = () => join(work, 'game');
  const key = (name: string) => join(work, name);

  beforeAll(async () => {
    work = await tempDir('signed-release');
    registry = await startRegistry();
    database = await freshDatabase('signed_release', { migrate: true });
    operator = {
      SPLINTER_HOME: join(work, 'operator'),
      DATABASE_URL: database.url,
      SPLINTER_KEK: randomBytes(32).toString('base64'),
      SPLINTERTREE_PATCH_REGISTRY: registry.host,
      SPLINTERTREE_MOD_REGISTRY: registry.host,
      COSIGN_PASSWORD: 'studio',
      SPLINTER_RELEASE_PASSWORD: 'release',
      SPLINTER_RELEASE_KEY: key('release.key'),
      USER: 'release-bot',
    };
    player = { SPLINTER_HOME: join(work, 'player') };
    await writeKeyPair(key('studio'), await generateKeyPair('studio'));
    await writeKeyPair(key('release'), await generateKeyPair('release'));
    await writeKeyPair(key('release2'), await generateKeyPair('release'));
    await writeKeyPair(key('stranger'), await generateKeyPair('release'));
    for (const version of ['1', '2', '3']) await writeTree(join(work, `v${version}`), version);
    api = await serveApi(operator);
    hostile = await startHostileApi(api.url);
    for (const realm of ['eu-1', 'eu-2', 'unsigned']) {
      const created = await splinterCli(['token', 'create', '--realm', realm, '--json'], operator);
      tokens[realm] = (JSON.parse(created.stdout) as { token: string }).token;
    }
  }, 120_000);
  afterAll(async () => {
    await hostile?.stop();
    await api?.stop();
    await database?.drop();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const operatorDo = async (args: string[], env: Record<string, string> = {}) => {
    // Head moves and refreshes publish their statement to the (plain-HTTP) test registry.
    const publishes = ['patch activate', 'patch rollback', 'release refresh', 'release publish'].includes(
      args.slice(0, 2).join(' '),
    );
    const result = await splinterCli([...args, ...(publishes ? ['--plain-http'] : []), '--json'], {
      ...operator,
      ...env,
    });
    if (publishes) expect(result.stderr).not.toContain('publishing it to the registry failed');
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as Record<string, unknown> & {
      id: string;
      statement?: { sequence: string };
    };
  };
  const push = async (realm: string, version: string) =>
    (
      await operatorDo([
        'patch',
        'push',
        join(work, `v${version}`),
        '--realm',
        realm,
        '--version',
        version,
        '--plain-http',
        '--key',
        key('studio.key'),
      ])
    ).id;
  const sync = async (
    options: { api?: string; realm?: string; release?: string[]; home?: string; output?: string } = {},
  ) => {
    const realm = options.realm ?? 'eu-1';
    const result = await splinterCli(
      [
        'launcher',
        'sync',
        '--api',
        options.api ?? api.url,
        '--token',
        tokens[realm]!,
        '--realm',
        realm,
        '--output',
        options.output ?? game(),
        '--plain-http',
        '--json',
        '--key',
        key('studio.pub'),
        ...(options.release ?? ['--release-key-file', key('release.pub')]),
      ],
      options.home ? { SPLINTER_HOME: options.home } : player,
    );
    return { ...result, json: JSON.parse(result.stdout || '{}') as SyncJson };
  };
  const statementNow = async (realm: string) => {
    const response = await fetch(`${api.url}/launcher/realms/${realm}/release`, {
      headers: { authorization: `Bearer ${tokens[realm]}` },
    });
    expect(response.status).toBe(200);
    return { etag: response.headers.get('etag'), body: await response.text() };
  };
  const viewNow = async (realm: string) =>
    (
      await fetch(`${api.url}/launcher/realms/${realm}`, {
        headers: { authorization: `Bearer ${tokens[realm]}` },
      })
    ).text();
  const expectRefused = async (
    result: Awaited<ReturnType<typeof sync>>,
    code: string,
    before: Record<string, string>,
  ) => {
    expect(result.code, result.stderr).toBe(5);
    expect(result.json.error?.code).toBe(code);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^splinter: ${code}: `)),
    ]);
    expect(await snapshot(game())).toEqual(before);
  };

  it('signs activations and rollbacks; a launcher follows both, a real rollback being a higher sequence', async () => {
    ids.v1 = await push('eu-1', '1');
    const first = await operatorDo(['patch', 'activate', ids.v1]);
    expect(first.statement?.sequence).toMatch(/^\d+$/);
    const installed = await sync();
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.json).toMatchObject({
      action: 'installed',
      head: { id: ids.v1, version: '1' },
      release: { sequence: first.statement!.sequence },
    });

    ids.v2 = await push('eu-1', '2');
    const second = await operatorDo(['patch', 'activate', ids.v2]);
    expect((await sync()).json).toMatchObject({ action: 'installed', head: { version: '2' } });
    const back = await operatorDo(['patch', 'rollback', '--realm', 'eu-1']);
    expect(BigInt(back.statement!.sequence)).toBeGreaterThan(BigInt(second.statement!.sequence));
    const rolledBack = await sync();
    expect(rolledBack.json).toMatchObject({ action: 'installed', head: { version: '1' } });
    expect(await snapshot(game())).toEqual(await snapshot(join(work, 'v1')));

    // The API serves what was signed at the rollback, byte for byte, with the sequence as its ETag.
    const served = await statementNow('eu-1');
    expect(served.etag).toBe(`"release-${back.statement!.sequence}"`);
    const shown = await splinterCli(['release', 'show', '--realm', 'eu-1'], operator);
    expect(shown.stdout.trim()).toBe(served.body);
    // The database holds one statement per head move, each in the release log's order.
    const history = await operatorDo(['patch', 'history', '--realm', 'eu-1']);
    expect((history.releases as unknown[]).length).toBe(3);
  }, 180_000);

  it('refuses an old statement from a hostile API (rollback attack), leaving the folder alone', async () => {
    // The attacker kept the statement and view of the time 2 was the head, and serves them now.
    await operatorDo(['patch', 'activate', ids.v2!]);
    const old = await statementNow('eu-1');
    const oldView = await viewNow('eu-1');
    saved.v2View = oldView;
    saved.v2Statement = old.body;
    expect((await sync()).json.head?.version).toBe('2');
    await operatorDo(['patch', 'rollback', '--realm', 'eu-1']);
    expect((await sync()).json.head?.version).toBe('1');

    hostile.lies.set('/launcher/realms/eu-1/release', old.body);
    hostile.lies.set('/launcher/realms/eu-1', oldView);
    try {
      await expectRefused(await sync({ api: hostile.url }), 'RELEASE_ROLLBACK', await snapshot(game()));
      // The honest API still works: the refusal changed nothing the launcher remembers.
      expect((await sync()).json).toMatchObject({ action: 'up-to-date', head: { version: '1' } });
    } finally {
      hostile.lies.clear();
    }
  }, 180_000);

  it('takes the statement from the registry, beside the patches, when the API serves an old one', async () => {
    const current = await statementNow('eu-1');
    // Published at the rollback: an OCI artifact tagged `release` in the realm's patch repository.
    const manifest = await fetch(`http://${registry.host}/v2/patches/eu-1/manifests/release`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(manifest.status).toBe(200);
    const published = (await manifest.json()) as {
      artifactType: string;
      layers: Array<{ mediaType: string; digest: string }>;
    };
    expect(published.artifactType).toBe('application/vnd.splintertree.release.v1+json');
    const layer = await fetch(`http://${registry.host}/v2/patches/eu-1/blobs/${published.layers[0]!.digest}`);
    expect(await layer.text()).toBe(current.body);

    const before = await snapshot(game());
    hostile.lies.set('/launcher/realms/eu-1/release', saved.v2Statement!);
    try {
      await expectRefused(await sync({ api: hostile.url }), 'RELEASE_ROLLBACK', before);
      const fromRegistry = await sync({
        api: hostile.url,
        release: ['--release-key-file', key('release.pub'), '--release-from', 'registry'],
      });
      expect(fromRegistry.code, fromRegistry.stderr).toBe(0);
      expect(fromRegistry.json).toMatchObject({ action: 'up-to-date', head: { version: '1' } });
    } finally {
      hostile.lies.clear();
    }
    const again = await operatorDo(['release', 'publish', '--realm', 'eu-1']);
    expect(again.reference).toBe(`${registry.host}/patches/eu-1:release`);
  }, 180_000);

  it('refuses an expired statement (freeze) until the operator refreshes it; refresh re-signs the same head', async () => {
    const before = await snapshot(game());
    const refreshed = await operatorDo(['release', 'refresh', '--realm', 'eu-1', '--release-ttl', '2s']);
    expect(refreshed).toMatchObject({ realm: 'eu-1', head: ids.v1 });
    // Waits for the clock to pass the expiry the statement itself names (no fixed delay).
    while (Date.now() <= Date.parse(refreshed.expiresAt as string)) await sleep(50);
    await expectRefused(await sync(), 'RELEASE_EXPIRED', before);

    const renewed = await operatorDo(['release', 'refresh', '--realm', 'eu-1']);
    expect(BigInt(renewed.sequence as string)).toBeGreaterThan(BigInt(refreshed.sequence as string));
    expect((await sync()).json).toMatchObject({
      action: 'up-to-date',
      head: { id: ids.v1 },
      release: { sequence: renewed.sequence },
    });
  }, 180_000);

  it('refuses a statement of another realm replayed for this one, and one by an unknown key', async () => {
    await push('eu-2', '3');
    await operatorDo(['patch', 'activate', '3', '--realm', 'eu-2']);
    const before = await snapshot(game());
    hostile.lies.set('/launcher/realms/eu-1/release', (await statementNow('eu-2')).body);
    try {
      await expectRefused(await sync({ api: hostile.url }), 'RELEASE_REALM_MISMATCH', before);
    } finally {
      hostile.lies.clear();
    }
    await expectRefused(
      await sync({ release: ['--release-key-file', key('stranger.pub')] }),
      'RELEASE_UNTRUSTED',
      before,
    );
    // A statement signed by a key the launcher does not trust, served as if current.
    await operatorDo(['release', 'refresh', '--realm', 'eu-2'], {
      SPLINTER_RELEASE_KEY: key('stranger.key'),
    });
    const forged = await sync({ realm: 'eu-2', output: join(work, 'eu-2') });
    expect(forged.code).toBe(5);
    expect(forged.json.error?.code).toBe('RELEASE_UNTRUSTED');
  }, 180_000);

  it('refuses a head whose manifest is not what it claims (a 1.0.0 manifest re-labelled as 3.0.0)', async () => {
    const before = await snapshot(game());
    // The API (or a man in the middle) names version 3 but points at the manifest of version 1.
    const view = JSON.parse(saved.v2View!) as {
      head: { version: string };
      chain: Array<{ version: string }>;
    };
    view.head.version = '3';
    view.chain.at(-1)!.version = '3';
    hostile.lies.set('/launcher/realms/eu-1', JSON.stringify(view));
    try {
      // With release keys, the view disagrees with the signed statement (which names 1): refused.
      await expectRefused(await sync({ api: hostile.url }), 'RELEASE_HEAD_MISMATCH', before);
      // Without release keys the version annotation of the manifest is still compared with the claim.
      const unsigned = await sync({ api: hostile.url, release: [] });
      expect(unsigned.code).toBe(5);
      expect(unsigned.json.error?.code).toBe('RELEASE_HEAD_MISMATCH');
      expect(unsigned.stderr).toMatch(/dev\.splintertree\.version="2", but the launcher API names "3"/);
      expect(await snapshot(game())).toEqual(before);
    } finally {
      hostile.lies.clear();
    }
    // A head moved without a statement is not accepted by a launcher that checks releases.
    ids.v2b = await push('eu-1', '3');
    const unsignedMove = await splinterCli(['patch', 'activate', ids.v2b, '--json'], {
      ...operator,
      SPLINTER_RELEASE_KEY: '',
    });
    expect(unsignedMove.code, unsignedMove.stderr).toBe(0);
    expect(unsignedMove.stderr).toContain('this head move is not signed');
    expect(unsignedMove.stderr).toContain(
      'splinter: hint: pass --release-key, or run splinter release refresh --realm eu-1 after the move\n',
    );
    await expectRefused(await sync(), 'RELEASE_HEAD_MISMATCH', before);
    await operatorDo(['release', 'refresh', '--realm', 'eu-1']);
    expect((await sync()).json).toMatchObject({ action: 'installed', head: { version: '3' } });
  }, 180_000);

  it('rotates the release key through a list signed by the previous key; the old key is then refused', async () => {
    const rotated = await operatorDo([
      'release',
      'sign-keys',
      '--release-key',
      key('release.key'),
      '--next',
      key('release2.pub'),
      '--version',
      '1',
      '--output',
      key('keys-1.json'),
    ]);
    expect(rotated).toMatchObject({ version: 1 });
    await operatorDo(['release', 'refresh', '--realm', 'eu-1'], {
      SPLINTER_RELEASE_KEY: key('release2.key'),
    });
    // Pinned to the first key only, the launcher refuses the new key's statement...
    const before = await snapshot(game());
    await expectRefused(await sync(), 'RELEASE_UNTRUSTED', before);
    // ...and accepts it given the list the old key signed.
    const accepted = await sync({
      release: ['--release-key-file', key('release.pub'), '--release-keys', key('keys-1.json')],
    });
    expect(accepted.code, accepted.stderr).toBe(0);
    // Remembered: without the list it still trusts the new key, and no longer the old one.
    expect((await sync()).code).toBe(0);
    await operatorDo(['release', 'refresh', '--realm', 'eu-1']);
    await expectRefused(await sync(), 'RELEASE_UNTRUSTED', before);
    // A list signed by a key outside the trusted list is refused with its own code.
    await operatorDo([
      'release',
      'sign-keys',
      '--release-key',
      key('stranger.key'),
      '--next',
      key('stranger.pub'),
      '--version',
      '2',
      '--output',
      key('keys-2-forged.json'),
    ]);
    const forgedList = await sync({
      release: ['--release-key-file', key('release.pub'), '--release-keys', key('keys-2-forged.json')],
    });
    expect(forgedList.json.error?.code).toBe('RELEASE_KEYS_INVALID');
    await operatorDo(['release', 'refresh', '--realm', 'eu-1'], {
      SPLINTER_RELEASE_KEY: key('release2.key'),
    });
  }, 180_000);

  it('release verify checks a statement offline; the API answers 404 and 403 where it should', async () => {
    await operatorDo(['release', 'show', '--realm', 'eu-1', '--output', key('statement.json')]);
    const ok = await splinterCli(
      [
        'release',
        'verify',
        key('statement.json'),
        '--key',
        key('release.pub'),
        '--release-keys',
        key('keys-1.json'),
        '--realm',
        'eu-1',
      ],
      {},
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^Verified OK: eu-1 release #\d+ \(refresh\) is patch \d+ version 3 /);
    const other = await splinterCli(
      ['release', 'verify', key('statement.json'), '--key', key('release2.pub'), '--realm', 'eu-2'],
      {},
    );
    expect(other.code).toBe(5);
    expect(other.stderr).toMatch(/^splinter: RELEASE_REALM_MISMATCH: /);
    const wrong = await splinterCli(
      ['release', 'verify', key('statement.json'), '--key', key('release.pub')],
      {},
    );
    expect(wrong.stderr).toMatch(/^splinter: RELEASE_UNTRUSTED: /);
    const tampered = JSON.parse(await readFile(key('statement.json'), 'utf8')) as { payload: string };
    const payload = JSON.parse(Buffer.from(tampered.payload, 'base64').toString()) as {
      predicate: { expiresAt: string };
    };
    payload.predicate.expiresAt = '2099-01-01T00:00:00.000Z';
    tampered.payload = Buffer.from(JSON.stringify(payload)).toString('base64');
    await writeFile(key('tampered.json'), JSON.stringify(tampered));
    const extended = await splinterCli(
      ['release', 'verify', key('tampered.json'), '--key', key('release2.pub')],
      {},
    );
    expect(extended.stderr).toMatch(/^splinter: RELEASE_UNTRUSTED: /);

    const unchecked = await sync({ release: ['--release-from', 'registry'] });
    expect(unchecked.code).toBe(2);
    expect(unchecked.stderr).toMatch(/^splinter: INVALID_ARGUMENT: --release-from needs --release-key-file/);

    const missing = await fetch(`${api.url}/launcher/realms/unsigned/release`, {
      headers: { authorization: `Bearer ${tokens.unsigned}` },
    });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { code: string }).code).toBe('RELEASE_MISSING');
    const foreign = await fetch(`${api.url}/launcher/realms/eu-1/release`, {
      headers: { authorization: `Bearer ${tokens['eu-2']}` },
    });
    expect(foreign.status).toBe(403);
    expect((await readdir(work)).filter((n) => n.startsWith('.splinter-staging'))).toEqual([]);
  }, 120_000);

  it('activator run takes the mods from the signed statement and refuses a head none signed', async () => {
    const env = { ...operator, SPLINTER_HOME: join(work, 'activator-home') };
    const mods = join(work, 'mods');
    const run = (release: string[]) =>
      splinterCli(
        [
          'activator',
          'run',
          '--realm',
          'mods-realm',
          '--output',
          mods,
          '--plain-http',
          '--json',
          '--key',
          key('studio.pub'),
          ...release,
        ],
        env,
      );
    // The realm trusts the studio's key for mods (checked at push --mod and at activate).
    await operatorDo(['realm', 'trust', 'set', '--realm', 'mods-realm', '--key', key('studio.pub')]);
    await operatorDo([
      'mod',
      'push',
      SAMPLE_MOD,
      '--name',
      'minimap',
      '--version',
      '1',
      '--plain-http',
      '--key',
      key('studio.key'),
    ]);
    const m1 = (
      await operatorDo([
        'patch',
        'push',
        join(work, 'v1'),
        '--realm',
        'mods-realm',
        '--version',
        '1',
        '--plain-http',
        '--key',
        key('studio.key'),
        '--mod',
        `${registry.host}/mods/minimap:1`,
      ])
    ).id;
    await operatorDo(['patch', 'activate', m1], { SPLINTER_RELEASE_KEY: key('release2.key') });
    const trusted = ['--release-key-file', key('release2.pub')];
    const installed = await run(trusted);
    expect(installed.code, installed.stderr).toBe(0);
    expect(JSON.parse(installed.stdout)).toMatchObject({
      head: { version: '1' },
      installed: [{ name: 'minimap' }],
      release: { sequence: expect.stringMatching(/^\d+$/) },
    });
    const refused = await run(['--release-key-file', key('stranger.pub')]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/^splinter: RELEASE_UNTRUSTED: /);
    const m2 = await push('mods-realm', '2');
    // --watch: an unsigned head move is refused; the refresh that signs it is heard and followed.
    const child = spawn(
      process.execPath,
      [
        CLI,
        'activator',
        'run',
        '--realm',
        'mods-realm',
        '--output',
        mods,
        '--watch',
        '--plain-http',
        '--json',
        '--key',
        key('studio.pub'),
        ...trusted,
      ],
      { env: scrubbedEnv(env), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const output = captureOutput(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const until = async (what: string, done: () => boolean) => {
      const deadline = Date.now() + 30_000;
      while (!done()) {
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`no ${what}: ${output.stderr()}`);
        await sleep(50);
      }
    };
    const rounds = () =>
      output
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    try {
      await until('first round', () => rounds().length === 1);
      expect(rounds()[0]).toMatchObject({ head: { version: '1' }, kept: [{ name: 'minimap' }] });
      await operatorDo(['patch', 'activate', m2], { SPLINTER_RELEASE_KEY: '' });
      await until('refused round', () =>
        /activator round failed: .*release statement #\d+ names/.test(output.stderr()),
      );
      const unsigned = await run(trusted);
      expect(unsigned.code).toBe(5);
      expect(unsigned.stderr).toMatch(/^splinter: RELEASE_HEAD_MISMATCH: /);
      expect(await readdir(mods)).toEqual(['minimap']);
      await operatorDo(['release', 'refresh', '--realm', 'mods-realm'], {
        SPLINTER_RELEASE_KEY: key('release2.key'),
      });
      await until('round after the refresh', () => rounds().length === 2);
      expect(rounds()[1]).toMatchObject({ head: { version: '2' }, removed: ['minimap'] });
      expect(await readdir(mods)).toEqual([]);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, output.stderr()).toBe(0);
  }, 180_000);
});

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { generateKeyPair, writeKeyPair } from '@splintertree/sign';
import {
  type FreshDatabase,
  freshDatabase,
  type RunningRegistry,
  requireTool,
  startFaultProxy,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, tempDir } from '../packages/pack/test/helpers.js';
import { type ServedApi, serveApi, unlock } from './serve.js';
import { MediaTypes, SAMPLE, splinterCli } from './support.js';

const execFileAsync = promisify(execFile);

async function splinter(args: string[], env: Record<string, string>) {
  const result = await splinterCli([...args, '--json'], env);
  return {
    ...result,
    json: JSON.parse(result.stdout || '{}') as Record<string, unknown> & { error?: { code: string } },
  };
}

/** Every regular file under a folder. */
async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/**
 * Windows of plaintext (start, middle, end of each file) found anywhere in the registry's storage.
 * Random content does not compress, so an unencrypted layer would hold these windows verbatim.
 */
async function plaintextLeaks(registry: RunningRegistry, tree: string): Promise<string[]> {
  const blobs = await Promise.all((await filesUnder(registry.storageDir)).map((path) => readFile(path)));
  const leaks: string[] = [];
  for (const path of await filesUnder(tree)) {
    const plain = await readFile(path);
    for (const at of [0, Math.floor(plain.byteLength / 2), plain.byteLength - 64]) {
      const window = plain.subarray(at, at + 64);
      if (blobs.some((blob) => blob.includes(window))) leaks.push(`${path}@${at}`);
    }
  }
  return leaks;
}

async function randomTree(root: string): Promise<void> {
  await mkdir(join(root, 'data', 'zones'), { recursive: true });
  await writeFile(join(root, 'data', 'world.pak'), randomBytes(5 * 1024 * 1024 + 17));
  // A large executable: its sealed layer is opened whole, then given the layer's mode.
  await mkdir(join(root, 'bin'));
  await writeFile(join(root, 'bin', 'game'), randomBytes(4 * 1024 * 1024 + 3));
  await chmod(join(root, 'bin', 'game'), 0o755);
  for (let i = 0; i < 12; i++) {
    await writeFile(join(root, 'data', 'zones', `zone-${i}.bin`), randomBytes(2000 + i * 1500));
  }
  await writeFile(join(root, 'patch.ini'), `[patch]\nsecret_boss=${randomBytes(40).toString('hex')}\n`);
}

describe('encrypted preload end to end: real registry, PostgreSQL, splinter serve', () => {
  let work: string;
  let registry: RunningRegistry;
  let database: FreshDatabase;
  let api: ServedApi | undefined;
  let env: Record<string, string>;
  let tree: string;
  let kek: string;
  const ids: Record<string, string> = {};
  let token: string;

  beforeAll(async () => {
    work = await tempDir('preload');
    registry = await startRegistry();
    database = await freshDatabase('preload', { migrate: true });
    kek = randomBytes(32).toString('base64');
    env = {
      SPLINTER_HOME: join(work, 'operator'),
      DATABASE_URL: database.url,
      SPLINTER_KEK: kek,
      SPLINTERTREE_PATCH_REGISTRY: registry.host,
      USER: 'release-bot',
      COSIGN_PASSWORD: 'preload',
    };
    await writeKeyPair(join(work, 'release'), await generateKeyPair('preload'));
    tree = join(work, 'tree');
    await randomTree(tree);
  });
  afterAll(async () => {
    await api?.stop();
    await database?.drop();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const client = (name: string) => ({ ...env, SPLINTER_HOME: join(work, name) });
  // The operator signs what it pushes; launchers verify before they download (ciphertext included).
  const sign = () => ['--key', join(work, 'release.key')];
  const trust = () => ['--key', join(work, 'release.pub')];
  const reference = (version: string) => `${registry.host}/patches/eu-1:${version}`;

  it('pushes with --preload: status preload, key id in the manifest, no plaintext in any registry blob', async () => {
    const v1 = await splinter(
      ['patch', 'push', SAMPLE, '--realm', 'eu-1', '--version', '1', '--plain-http', ...sign()],
      env,
    );
    expect(v1.code, v1.stderr).toBe(0);
    ids.v1 = String(v1.json.id);
    expect((await splinter(['patch', 'activate', ids.v1], env)).code).toBe(0);

    const withoutKek = await splinter(
      ['patch', 'push', tree, '--realm', 'eu-1', '--version', '2', '--preload', '--plain-http'],
      { ...env, SPLINTER_KEK: '' },
    );
    expect(withoutKek.code).toBe(8);
    expect(withoutKek.json.error).toMatchObject({
      code: 'KEK_MISSING',
      hint: 'splinter kek generate makes one',
    });

    const v2 = await splinter(
      ['patch', 'push', tree, '--realm', 'eu-1', '--version', '2', '--preload', '--plain-http', ...sign()],
      env,
    );
    expect(v2.code, v2.stderr).toBe(0);
    expect(v2.json).toMatchObject({
      status: 'preload',
      parent: ids.v1,
      keyId: expect.stringMatching(/^sha256:/),
    });
    ids.v2 = String(v2.json.id);

    const inspected = await splinter(['inspect', reference('2'), '--plain-http'], env);
    expect(inspected.code, inspected.stderr).toBe(0);
    const shown = inspected.json as {
      annotations: Record<string, string>;
      layers: Array<{ mediaType: string }>;
    };
    expect(shown.annotations['dev.splintertree.seal.key-id']).toBe(v2.json.keyId);
    expect(shown.layers.length).toBeGreaterThanOrEqual(2);
    // A sealed root (the index inside it) and packs of sealed records: nothing names a file.
    expect(shown.layers[0]!.mediaType).toBe(MediaTypes.sealedRoot);
    expect(new Set(shown.layers.slice(1).map((l) => l.mediaType))).toEqual(new Set([MediaTypes.pack]));
    expect(await plaintextLeaks(registry, tree)).toEqual([]);
  }, 120_000);

  it('keeps the key locked in preload (423), refuses other realms (403), missing or unknown tokens (401), unknown ids (404)', async () => {
    const created = await splinter(['token', 'create', '--realm', 'eu-1'], env);
    expect(created.code, created.stderr).toBe(0);
    token = String(created.json.token);
    const other = String((await splinter(['token', 'create', '--realm', 'na-1'], env)).json.token);
    api = await serveApi(env);

    const locked = await unlock(api.url, ids.v2!, token);
    expect(locked.status).toBe(423);
    expect(locked.headers.get('cache-control')).toBe('no-store');
    expect(locked.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(locked.body).toMatchObject({ status: 423, code: 'KEY_LOCKED', title: 'Locked' });
    expect(locked.body).not.toHaveProperty('key');

    const cli = await splinter(['patch', 'unlock', ids.v2!, '--api', api.url, '--token', token], env);
    expect(cli.code).toBe(8);
    expect(cli.json.error?.code).toBe('KEY_LOCKED');

    expect((await unlock(api.url, ids.v2!, other)).status).toBe(403);
    expect((await unlock(api.url, ids.v2!)).status).toBe(401);
    expect((await unlock(api.url, ids.v2!, `${token.slice(0, -2)}xx`)).status).toBe(401);
    expect((await unlock(api.url, '987654', token)).status).toBe(404);
    expect((await unlock(api.url, 'nope', token)).status).toBe(404);

    const realm = await fetch(`${api.url}/launcher/realms/eu-1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(realm.status).toBe(200);
    expect(await realm.json()).toMatchObject({
      realm: 'eu-1',
      head: { id: ids.v1, status: 'active', keyId: null },
      chain: [{ id: ids.v1 }],
      preload: [{ id: ids.v2, version: '2', parent: ids.v1, status: 'preload' }],
    });
    const forbidden = await fetch(`${api.url}/launcher/realms/eu-1`, {
      headers: { authorization: `Bearer ${other}` },
    });
    expect(forbidden.status).toBe(403);
    const malformed = await fetch(`${api.url}/launcher/realms/EU..1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ code: 'INVALID_ARGUMENT' });

    const noKey = await splinter(
      ['patch', 'pull', reference('2'), '--output', join(work, 'early'), '--plain-http', ...trust()],
      client('launcher'),
    );
    expect(noKey.code).toBe(8);
    expect(noKey.json.error?.code).toBe('KEY_REQUIRED');
    await expect(readdir(join(work, 'early'))).rejects.toThrow();
  }, 60_000);

  it('releases the key the moment the activation commits; a pull with it reproduces the tree exactly', async () => {
    expect((await splinter(['patch', 'activate', ids.v2!], env)).code).toBe(0);
    const granted = await unlock(api!.url, ids.v2!, token);
    expect(granted.status).toBe(200);
    expect(granted.headers.get('cache-control')).toBe('no-store');
    expect(Buffer.from(String(granted.body.key), 'base64').byteLength).toBe(32);

    const keyFile = join(work, 'patch.key');
    const cli = await splinter(
      ['patch', 'unlock', ids.v2!, '--api', api!.url, '--token', token, '--output', keyFile],
      env,
    );
    expect(cli.code, cli.stderr).toBe(0);
    expect((await readFile(keyFile, 'utf8')).trim()).toBe(granted.body.key);
    const printed = await splinterCli(['patch', 'unlock', ids.v2!, '--api', api!.url, '--token', token], env);
    expect(printed.stdout.trim()).toBe(granted.body.key);

    const out = join(work, 'installed');
    const pulled = await splinter(
      ['patch', 'pull', reference('2'), '--output', out, '--key-file', keyFile, '--plain-http', ...trust()],
      client('launcher'),
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshot(out)).toEqual(await snapshot(tree));

    const wrongKey = join(work, 'wrong.key');
    await writeFile(wrongKey, randomBytes(32).toString('base64'));
    const refused = await splinter(
      [
        'patch',
        'pull',
        reference('2'),
        '--output',
        join(work, 'wrong'),
        '--key-file',
        wrongKey,
        '--plain-http',
        ...trust(),
      ],
      client('launcher'),
    );
    // Another key has another key id: the client knows it is not this patch's before trying it.
    expect(refused.code).toBe(8);
    expect(refused.json.error?.code).toBe('KEY_REQUIRED');
    await expect(readdir(join(work, 'wrong'))).rejects.toThrow();
  }, 60_000);

  it('refuses pack bytes a hostile mirror flips in transit: each sealed record fails its tag, nothing is written', async () => {
    const proxy = await startFaultProxy(registry.host);
    try {
      const manifest = (await (
        await fetch(`${registry.url}/v2/patches/eu-1/manifests/2`, {
          headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
        })
      ).json()) as { layers: Array<{ digest: string; mediaType: string }> };
      const packs = manifest.layers.filter((l) => l.mediaType === MediaTypes.pack).map((l) => l.digest);
      proxy.add({
        method: 'GET',
        path: new RegExp(`/blobs/(${packs.join('|')})`),
        fault: { kind: 'corrupt', offset: 10 },
      });
      const out = join(work, 'tampered', 'game');
      await mkdir(dirname(out));
      const pull = () =>
        splinter(
          [
            'patch',
            'pull',
            `${proxy.host}/patches/eu-1:2`,
            '--output',
            out,
            '--key-file',
            join(work, 'patch.key'),
            '--plain-http',
            ...trust(),
          ],
          client('launcher-2'),
        );
      const pulled = await pull();
      expect(pulled.code).toBe(8);
      expect(pulled.json.error?.code).toBe('DECRYPTION_FAILED');
      expect(await readdir(dirname(out))).toEqual([]);
      expect(proxy.log.some((request) => packs.some((digest) => request.path.includes(digest)))).toBe(true);

      // What failed its tag was not kept: the honest mirror's bytes install.
      proxy.clear();
      const honest = await pull();
      expect(honest.code, honest.stderr).toBe(0);
      expect(await snapshot(out)).toEqual(await snapshot(tree));
    } finally {
      await proxy.stop();
    }
  }, 60_000);

  it('opens sealed layers from the cache on the next pull, and heals a cached blob altered on disk', async () => {
    const pull = (output: string) =>
      splinter(
        [
          'patch',
          'pull',
          reference('2'),
          '--output',
          output,
          '--key-file',
          join(work, 'patch.key'),
          '--plain-http',
          ...trust(),
        ],
        client('launcher'),
      );
    // 'launcher' downloaded every blob of version 2 above: this pull opens them from its cache.
    const again = join(work, 'again', 'game');
    const cached = await pull(again);
    expect(cached.code, cached.stderr).toBe(0);
    expect(cached.json.transfer).toMatchObject({ requests: 0, bytes: 0 });
    expect(await snapshot(again)).toEqual(await snapshot(tree));

    const manifestResponse = await fetch(`${registry.url}/v2/patches/eu-1/manifests/2`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const manifest = (await manifestResponse.json()) as {
      layers: Array<{ digest: string; size: number; mediaType: string }>;
    };
    const victim = manifest.layers
      .filter((l) => l.mediaType === MediaTypes.pack)
      .reduce((a, b) => (a.size >= b.size ? a : b));
    const packFile = join(work, 'launcher', 'packs', victim.digest.slice('sha256:'.length));
    const pack = await readFile(packFile);
    const original = Buffer.from(pack);
    pack[1000]! ^= 0x01;
    await writeFile(packFile, pack);
    const out = join(work, 'altered-cache', 'game');
    // The record that fails its tag is dropped from the cache and downloaded again in the same pull.
    const healed = await pull(out);
    expect(healed.code, healed.stderr).toBe(0);
    expect(healed.json.transfer).toMatchObject({ requests: 1 });
    expect(await snapshot(out)).toEqual(await snapshot(tree));
    expect((await readFile(packFile)).equals(original)).toBe(true);
  }, 60_000);

  it('never puts a plaintext key (or token) into a database dump', async () => {
    const key = Buffer.from(await readFile(join(work, 'patch.key'), 'utf8').then((t) => t.trim()), 'base64');
    const { stdout: dump } = await execFileAsync(
      requireTool('pg_dump', 'postgresql-client'),
      ['--dbname', database.url],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    expect(dump).toContain('cluster.patch_keys');
    for (const form of [key.toString('hex'), key.toString('base64'), key.toString('base64url')]) {
      expect(dump.includes(form)).toBe(false);
    }
    // The whole secret: it is base64url, so it may hold '_' itself, and a fragment of it could turn up
    // in a dump by chance (this flaked once when split('_') cut the secret short).
    const secret = /^spl_\d+_(.{43})$/.exec(token)?.[1];
    expect(secret).toBeDefined();
    expect(dump.includes(secret!)).toBe(false);
  }, 60_000);

  it('locks the key again after a rollback past the patch, and answers 410 once it is revoked', async () => {
    expect((await splinter(['patch', 'rollback', '--realm', 'eu-1'], env)).code).toBe(0);
    const deadline = Date.now() + 2000;
    let status = 0;
    do {
      status = (await unlock(api!.url, ids.v2!, token)).status;
    } while (status !== 423 && Date.now() < deadline);
    expect(status).toBe(423);
    expect((await splinter(['patch', 'revoke', ids.v2!], env)).code).toBe(0);
    const gone = await unlock(api!.url, ids.v2!, token);
    expect(gone.status).toBe(410);
    expect(gone.body.code).toBe('KEY_REVOKED');
  }, 60_000);

  it('rotates the KEK in one transaction: the old KEK is refused afterwards, the new one unlocks', async () => {
    const v3 = await splinter(
      [
        'patch',
        'push',
        tree,
        '--realm',
        'eu-1',
        '--version',
        '3',
        '--parent',
        ids.v1!,
        '--preload',
        '--plain-http',
      ],
      env,
    );
    expect(v3.code, v3.stderr).toBe(0);
    const id = String(v3.json.id);
    expect((await splinter(['patch', 'activate', id], env)).code).toBe(0);
    const before = await unlock(api!.url, id, token);
    expect(before.status).toBe(200);

    const newKekFile = join(work, 'new.kek');
    const generated = await splinter(['kek', 'generate'], env);
    await writeFile(newKekFile, `${generated.json.kek}\n`);
    const wrongCurrent = await splinter(['kek', 'rotate', '--new-kek-file', newKekFile], {
      ...env,
      SPLINTER_KEK: randomBytes(32).toString('hex'),
    });
    expect(wrongCurrent.json.error?.code).toBe('KEK_MISMATCH');
    const rotated = await splinter(['kek', 'rotate', '--new-kek-file', newKekFile], env);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.json.keys).toBe(1); // v2's key was destroyed by its revocation

    const oldKek = await splinterCli(['serve', '--port', '0'], env);
    expect(oldKek.code).toBe(8);
    expect(oldKek.stderr).toContain('KEK_MISMATCH');
    const push = await splinter(
      ['patch', 'push', tree, '--realm', 'eu-1', '--version', '4', '--preload', '--plain-http'],
      env,
    );
    expect(push.json.error?.code).toBe('KEK_MISMATCH');

    expect(await api!.stop()).toBe(0);
    api = await serveApi({ ...env, SPLINTER_KEK: '', SPLINTER_KEK_FILE: newKekFile });
    const after = await unlock(api.url, id, token);
    expect(after.status).toBe(200);
    expect(after.body.key).toBe(before.body.key);
  }, 120_000);

  it('control: the same tree pushed without --preload is found in the registry by the leak scan', async () => {
    const plain = await splinter(
      ['patch', 'push', tree, '--realm', 'control', '--version', '1', '--plain-http'],
      env,
    );
    expect(plain.code, plain.stderr).toBe(0);
    expect((await plaintextLeaks(registry, tree)).length).toBeGreaterThan(0);
  }, 60_000);
});

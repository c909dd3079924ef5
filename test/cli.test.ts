import { randomBytes } from 'node:crypto';
import { cp, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, loadPrivateKey, loadPublicKey, writeKeyPair } from '@splintertree/sign';
import { type RunningRegistry, requireTool, startFaultProxy, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MediaTypes,
  run,
  SAMPLE,
  SAMPLE_MOD,
  snapshot,
  splinterCli,
  type TransferJson,
  tempDir,
  treeBytes,
} from './support.js';

const splinter = splinterCli;

interface Layer {
  digest: string;
  size: number;
  mediaType: string;
}

interface PushJson {
  digest: string;
  reference: string;
  transfer: TransferJson;
  chunks: { files: number; chunks: number; newChunks: number; newRecordBytes: number };
}

interface PullJson {
  digest: string;
  files: number;
  kept: number;
  transfer: TransferJson;
}

/** The pack layer with the most bytes (every byte of a pack belongs to some record). */
function largestPack(layers: Layer[]): Layer {
  const packs = layers.filter((layer) => layer.mediaType === MediaTypes.pack);
  expect(packs.length).toBeGreaterThan(0);
  return packs.reduce((a, b) => (a.size >= b.size ? a : b));
}

describe('splinter CLI end to end', () => {
  let work: string;
  let registry: RunningRegistry;
  let env: Record<string, string>;
  // Every push here is signed and every pull verifies, as in production; signing.test.ts covers refusals.
  let sign: string[];
  let trust: string[];
  beforeAll(async () => {
    work = await tempDir('cli');
    registry = await startRegistry({ auth: 'htpasswd' });
    env = {
      SPLINTER_HOME: join(work, 'home'),
      DOCKER_CONFIG: registry.dockerConfigDir,
      COSIGN_PASSWORD: 'cli-test',
    };
    await writeKeyPair(join(work, 'signing'), await generateKeyPair('cli-test'));
    sign = ['--key', join(work, 'signing.key')];
    trust = ['--key', join(work, 'signing.pub')];
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('pushes the sample patch into the embedded store and pulls it back exactly', async () => {
    const pushed = await splinter(
      ['patch', 'push', SAMPLE, '--realm', 'demo', '--version', '1.0.0', ...sign],
      env,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const [digest, reference] = pushed.stdout.trim().split('\n');
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(reference).toBe('patches/demo:1.0.0');

    const pulled = await splinter(
      ['patch', 'pull', 'patches/demo:1.0.0', '--output', join(work, 'out'), '--json', ...trust],
      env,
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(JSON.parse(pulled.stdout)).toMatchObject({ digest, files: 7 });
    expect(await snapshot(join(work, 'out'))).toEqual(await snapshot(SAMPLE));
  });

  it('uploads no blob and packs no chunk when an unchanged tree is pushed again', async () => {
    const again = await splinter(
      ['patch', 'push', SAMPLE, '--realm', 'demo', '--version', '1.0.1', '--json', ...sign],
      env,
    );
    expect(again.code, again.stderr).toBe(0);
    const result = JSON.parse(again.stdout) as PushJson;
    expect(result.transfer).toMatchObject({ transferred: 0, mounted: 0 });
    expect(result.transfer.reused).toBeGreaterThan(0);
    expect(result.transfer.reusedBytes).toBeGreaterThan(0);
    // The only bytes sent are the new version's manifest.
    const manifest = await stat(join(env.SPLINTER_HOME!, 'store', 'blobs', 'sha256', result.digest.slice(7)));
    expect(result.transfer.bytes).toBe(manifest.size);
    expect(result.chunks).toMatchObject({ files: 7, newChunks: 0, newRecordBytes: 0 });
    expect(result.chunks.chunks).toBeGreaterThanOrEqual(7);
  });

  it('pushes to a registry with Basic auth from DOCKER_CONFIG; skopeo reads it; a fresh client pulls it', async () => {
    const pushed = await splinter(
      [
        'patch',
        'push',
        SAMPLE,
        '--realm',
        'eu-1',
        '--version',
        '2.0.0',
        '--registry',
        `${registry.host}/game`,
        '--plain-http',
        '--json',
        ...sign,
      ],
      env,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const result = JSON.parse(pushed.stdout) as { digest: string; reference: string };
    expect(result.reference).toBe(`${registry.host}/game/eu-1:2.0.0`);

    const skopeo = requireTool('skopeo');
    const { stdout } = await run(skopeo, [
      'inspect',
      '--raw',
      '--tls-verify=false',
      '--creds',
      `${registry.username}:${registry.password}`,
      `docker://${result.reference}`,
    ]);
    const manifest = JSON.parse(stdout) as { artifactType: string; annotations: Record<string, string> };
    expect(manifest.artifactType).toBe('application/vnd.splintertree.patch.v1');
    expect(manifest.annotations['dev.splintertree.patch.realm']).toBe('eu-1');
    expect(manifest.annotations['org.opencontainers.image.created']).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    );

    const fresh = { ...env, SPLINTER_HOME: join(work, 'client-home') };
    const pulled = await splinter(
      [
        'patch',
        'pull',
        `${result.reference.replace(':2.0.0', '')}@${result.digest}`,
        '--output',
        join(work, 'client'),
        '--plain-http',
        ...trust,
      ],
      fresh,
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshot(join(work, 'client'))).toEqual(await snapshot(SAMPLE));
  });

  it('mounts blobs from another realm of the same registry instead of uploading them again', async () => {
    const tree = join(work, 'mount-tree');
    await run('mkdir', ['-p', tree]);
    await writeFile(join(tree, 'unique.dat'), randomBytes(5000));
    await writeFile(join(tree, 'large.pak'), randomBytes(5 * 1024 * 1024));
    const push = (realm: string) =>
      splinter(
        [
          'patch',
          'push',
          tree,
          '--realm',
          realm,
          '--version',
          '1',
          '--registry',
          `${registry.host}/mounts`,
          '--plain-http',
          '--json',
        ],
        env,
      );
    const first = await push('eu-2');
    expect(first.code, first.stderr).toBe(0);
    const firstResult = JSON.parse(first.stdout) as PushJson;
    const inspected = await splinter(['inspect', firstResult.reference, '--plain-http', '--json'], env);
    const { layers } = JSON.parse(inspected.stdout) as { layers: Layer[] };
    // The blobs of a version: the empty config, the index root and its packs.
    const blobCount = layers.length + 1;
    expect(layers[0]!.mediaType).toBe(MediaTypes.root);
    expect(layers.slice(1).every((layer) => layer.mediaType === MediaTypes.pack)).toBe(true);
    // The new content is uploaded; only the shared 2-byte empty config may come by mount already.
    expect(firstResult.transfer.transferred).toBeGreaterThanOrEqual(blobCount - 1);
    expect(firstResult.transfer.transferred + firstResult.transfer.mounted).toBe(blobCount);
    // Another realm has no base to reuse chunks from: it packs them again, into the same packs.
    const second = await push('na-2');
    expect(second.code, second.stderr).toBe(0);
    const secondResult = JSON.parse(second.stdout) as PushJson;
    expect(secondResult.chunks.newChunks).toBeGreaterThan(0);
    expect(secondResult.transfer).toMatchObject({ transferred: 0, mounted: blobCount });
  });

  it('pushes and pulls a mod, and inspect shows it', async () => {
    const pushed = await splinter(
      ['mod', 'push', SAMPLE_MOD, '--name', 'better-minimap', '--version', '0.3.0', '--json', ...sign],
      env,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const inspected = await splinter(['inspect', 'mods/better-minimap:0.3.0', '--json'], env);
    expect(JSON.parse(inspected.stdout)).toMatchObject({
      artifactType: 'application/vnd.splintertree.mod.v1',
      annotations: { 'dev.splintertree.mod.name': 'better-minimap' },
    });
    const pulled = await splinter(
      ['mod', 'pull', 'mods/better-minimap:0.3.0', '--output', join(work, 'mod'), ...trust],
      env,
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshot(join(work, 'mod'))).toEqual(await snapshot(SAMPLE_MOD));
    const wrongKind = await splinter(
      ['patch', 'pull', 'mods/better-minimap:0.3.0', '--output', join(work, 'nope'), ...trust],
      env,
    );
    expect(wrongKind.code).toBe(4);
    expect(wrongKind.stderr).toMatch(/^splinter: UNSUPPORTED_MEDIA_TYPE: /);

    // A new version pushed with --base packs only the chunks the base does not hold.
    const next = join(work, 'minimap-0.4.0');
    await cp(SAMPLE_MOD, next, { recursive: true });
    await writeFile(join(next, 'scripts', 'compass.lua'), 'print("compass")\n');
    const based = await splinter(
      [
        'mod',
        'push',
        next,
        '--name',
        'better-minimap',
        '--version',
        '0.4.0',
        '--base',
        'mods/better-minimap:0.3.0',
        '--json',
        ...sign,
      ],
      env,
    );
    expect(based.code, based.stderr).toBe(0);
    // Two new chunks: the new file's and the index's; the two unchanged files are reused (the base's
    // pack is mostly its dead index, so compaction may move them, which is not new content).
    expect((JSON.parse(based.stdout) as PushJson).chunks).toMatchObject({ files: 3, newChunks: 2 });
    const pulledNext = await splinter(
      ['mod', 'pull', 'mods/better-minimap:0.4.0', '--output', join(work, 'mod-0.4.0'), ...trust],
      env,
    );
    expect(pulledNext.code, pulledNext.stderr).toBe(0);
    expect(await snapshot(join(work, 'mod-0.4.0'))).toEqual(await snapshot(next));
  });

  it('leaves no partial tree when a pack in the store is corrupt, says so in one line, and pulls once it is repaired', async () => {
    // A tree of its own: a pack no earlier pull has put in this home's cache.
    const tree = join(work, 'corrupt-tree');
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'world.pak'), randomBytes(3 * 1024 * 1024));
    await writeFile(join(tree, 'readme.txt'), 'corrupt on disk\n');
    const pushed = await splinter(
      ['patch', 'push', tree, '--realm', 'corrupt', '--version', '1', '--json', ...sign],
      env,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const manifestDigest = (JSON.parse(pushed.stdout) as PushJson).digest;
    const blobs = join(env.SPLINTER_HOME!, 'store', 'blobs', 'sha256');
    const manifest = JSON.parse(await readFile(join(blobs, manifestDigest.slice(7)), 'utf8')) as {
      layers: Layer[];
    };
    const victim = join(blobs, largestPack(manifest.layers).digest.slice(7));
    const original = await readFile(victim);
    const damaged = Buffer.from(original);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    await writeFile(victim, damaged);
    const pull = (extra: string[] = []) =>
      splinter(
        ['patch', 'pull', 'patches/corrupt:1', '--output', join(work, 'corrupt-out'), ...extra, ...trust],
        env,
      );
    try {
      const pulled = await pull();
      expect(pulled.code).toBe(4);
      expect(pulled.stderr.trim().split('\n')).toHaveLength(1);
      expect(pulled.stderr).toMatch(/^splinter: DIGEST_MISMATCH: /);
      const leftovers = (await readdir(work)).filter(
        (name) => name.startsWith('corrupt-out') || name.startsWith('.splinter-staging'),
      );
      expect(leftovers).toEqual([]);
    } finally {
      await writeFile(victim, original);
    }
    // Nothing of the corrupt pack stayed in the cache to poison the next pull.
    const repaired = await pull(['--json']);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(await snapshot(join(work, 'corrupt-out'))).toEqual(await snapshot(tree));
  });

  it('refuses a root or a pack a hostile mirror altered in transit, keeping nothing that spoils the next pull', async () => {
    const proxy = await startFaultProxy(registry.host);
    try {
      const pushed = await splinter(
        [
          'patch',
          'push',
          SAMPLE,
          '--realm',
          'mirror',
          '--version',
          '1',
          '--registry',
          registry.host,
          '--plain-http',
          '--json',
          ...sign,
        ],
        env,
      );
      expect(pushed.code, pushed.stderr).toBe(0);
      const manifestDigest = (JSON.parse(pushed.stdout) as PushJson).digest;
      const inspected = await splinter(
        ['inspect', `${registry.host}/patches/mirror@${manifestDigest}`, '--plain-http', '--json'],
        env,
      );
      const { layers } = JSON.parse(inspected.stdout) as { layers: Layer[] };
      const dockerConfig = join(work, 'mirror-docker');
      await run('mkdir', ['-p', dockerConfig]);
      const auth = Buffer.from(`${registry.username}:${registry.password}`).toString('base64');
      await writeFile(
        join(dockerConfig, 'config.json'),
        JSON.stringify({ auths: { [proxy.host]: { auth } } }),
      );
      const client = { ...env, SPLINTER_HOME: join(work, 'mirror-home'), DOCKER_CONFIG: dockerConfig };
      const pull = () =>
        splinter(
          [
            'patch',
            'pull',
            `${proxy.host}/patches/mirror@${manifestDigest}`,
            '--output',
            join(work, 'mirror-out'),
            '--plain-http',
            ...trust,
          ],
          client,
        );
      const nothingInstalled = async () =>
        expect(
          (await readdir(work)).filter(
            (n) => n.startsWith('mirror-out') || n.startsWith('.splinter-staging'),
          ),
        ).toEqual([]);
      const corrupting = (digests: string[]) => {
        proxy.clear();
        proxy.add({
          method: 'GET',
          path: new RegExp(`/blobs/(${digests.join('|')})`),
          fault: { kind: 'corrupt', offset: 10 },
        });
      };

      corrupting([layers[0]!.digest]);
      const badRoot = await pull();
      expect(badRoot.stderr).toMatch(/^splinter: DIGEST_MISMATCH: /);
      expect(badRoot.code).toBe(4);
      await nothingInstalled();

      const packs = layers.filter((layer) => layer.mediaType === MediaTypes.pack);
      expect(packs.length).toBeGreaterThan(0);
      corrupting(packs.map((pack) => pack.digest));
      const badPack = await pull();
      expect(badPack.stderr).toMatch(/^splinter: DIGEST_MISMATCH: /);
      expect(badPack.code).toBe(4);
      await nothingInstalled();
      expect(proxy.log.some((request) => packs.some((pack) => request.path.includes(pack.digest)))).toBe(
        true,
      );

      proxy.clear();
      const honest = await pull();
      expect(honest.code, honest.stderr).toBe(0);
      expect(await snapshot(join(work, 'mirror-out'))).toEqual(await snapshot(SAMPLE));
    } finally {
      await proxy.stop();
    }
  });

  it('updates a folder in place: keeps unchanged files, heals an edited one, downloads only what an update changed', async () => {
    const v1 = join(work, 'inplace-v1');
    const v2 = join(work, 'inplace-v2');
    const world = randomBytes(4 * 1024 * 1024);
    await mkdir(join(v1, 'data'), { recursive: true });
    await writeFile(join(v1, 'data', 'world.pak'), world);
    await writeFile(join(v1, 'data', 'sounds.pak'), randomBytes(1024 * 1024));
    await writeFile(join(v1, 'game.ini'), '[game]\nversion=1\n');
    await cp(v1, v2, { recursive: true });
    const edited = Buffer.from(world);
    randomBytes(100).copy(edited, 2 * 1024 * 1024);
    await writeFile(join(v2, 'data', 'world.pak'), edited);
    await writeFile(join(v2, 'game.ini'), '[game]\nversion=2\n');
    const push = async (tree: string, version: string) => {
      const pushed = await splinter(
        ['patch', 'push', tree, '--realm', 'inplace', '--version', version, '--json', ...sign],
        env,
      );
      expect(pushed.code, pushed.stderr).toBe(0);
      return JSON.parse(pushed.stdout) as PushJson;
    };
    await push(v1, '1');
    // The realm's newest patch is the base: 100 bytes changed cost a chunk or two, not the file.
    const second = await push(v2, '2');
    expect(second.chunks.newRecordBytes).toBeGreaterThan(0);
    expect(second.chunks.newRecordBytes).toBeLessThan(1024 * 1024);

    const output = join(work, 'inplace-out');
    const pull = async (version: string, extra = ['--replace']) => {
      const pulled = await splinter(
        ['patch', 'pull', `patches/inplace:${version}`, '--output', output, '--json', ...extra, ...trust],
        env,
      );
      expect(pulled.code, pulled.stderr).toBe(0);
      return JSON.parse(pulled.stdout) as PullJson;
    };
    const first = await pull('1', []);
    expect(first).toMatchObject({ files: 3, kept: 0 });
    expect(first.transfer.bytes).toBeGreaterThan(0);
    const worldBefore = await stat(join(output, 'data', 'world.pak'));

    const again = await pull('1');
    expect(again).toMatchObject({ files: 3, kept: 3, transfer: { bytes: 0 } });
    expect((await stat(join(output, 'data', 'world.pak'))).ino).toBe(worldBefore.ino);

    // A tool patching bytes in place: the file is rebuilt from cached chunks, the others are kept.
    const handle = await open(join(output, 'data', 'sounds.pak'), 'r+');
    await handle.write(Buffer.from('MODDED'), 0, 6, 1000);
    await handle.close();
    const healed = await pull('1');
    expect(healed).toMatchObject({ kept: 2, transfer: { bytes: 0 } });
    expect(await snapshot(output)).toEqual(await snapshot(v1));

    const updated = await pull('2');
    expect(updated).toMatchObject({ files: 3, kept: 1 });
    expect(updated.transfer.bytes).toBeGreaterThan(0);
    expect(updated.transfer.bytes).toBeLessThan((await treeBytes(v2)) / 5);
    expect(await snapshot(output)).toEqual(await snapshot(v2));

    const rolledBack = await pull('1');
    expect(rolledBack).toMatchObject({ kept: 1, transfer: { bytes: 0 } });
    expect(await snapshot(output)).toEqual(await snapshot(v1));
  }, 120_000);

  it('installs only the chosen locale of a push tagged with --tags, and switches locale keeping shared files', async () => {
    const tags = join(work, 'tags.json');
    await writeFile(
      tags,
      JSON.stringify({ 'locale:deDE': ['data/locale/de.txt'], 'locale:enUS': ['data/locale/en.txt'] }),
    );
    const pushed = await splinter(
      ['patch', 'push', SAMPLE, '--realm', 'tagged', '--version', '1', '--tags', tags, ...sign],
      env,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const output = join(work, 'tagged-out');
    const pull = async (locale: string, extra: string[] = []) => {
      const pulled = await splinter(
        [
          'patch',
          'pull',
          'patches/tagged:1',
          '--output',
          output,
          '--locale',
          locale,
          '--json',
          ...extra,
          ...trust,
        ],
        env,
      );
      expect(pulled.code, pulled.stderr).toBe(0);
      return JSON.parse(pulled.stdout) as PullJson;
    };
    const without = async (path: string) => {
      const expected = await snapshot(SAMPLE);
      delete expected[path];
      return expected;
    };
    expect(await pull('deDE')).toMatchObject({ files: 6 });
    expect(await snapshot(output)).toEqual(await without('data/locale/en.txt'));
    expect(await pull('enUS', ['--replace'])).toMatchObject({ files: 6, kept: 5 });
    expect(await snapshot(output)).toEqual(await without('data/locale/de.txt'));

    const badTags = join(work, 'bad-tags.json');
    await writeFile(badTags, JSON.stringify({ 'language:de': ['**'] }));
    const refused = await splinter(
      ['patch', 'push', SAMPLE, '--realm', 'tagged', '--version', '2', '--tags', badTags],
      env,
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^splinter: INVALID_ARGUMENT: --tags /);
  });

  it('refuses to overwrite a non-empty output without --replace', async () => {
    const output = join(work, 'occupied');
    await run('mkdir', ['-p', output]);
    await writeFile(join(output, 'save.dat'), 'player progress');
    const pulled = await splinter(['patch', 'pull', 'patches/demo:1.0.0', '--output', output, ...trust], env);
    expect(pulled.code).toBe(2);
    expect(pulled.stderr).toMatch(
      /^splinter: OUTPUT_EXISTS: .*occupied already exists and is not empty\nsplinter: hint: pass --replace to replace it\n/,
    );
    expect(await readFile(join(output, 'save.dat'), 'utf8')).toBe('player progress');
  });

  it('generates a cosign key pair with the password from COSIGN_PASSWORD (empty allowed)', async () => {
    const prefix = join(work, 'release-key');
    const generated = await splinter(['key', 'generate', '--output-key-prefix', prefix, '--json'], {
      ...env,
      COSIGN_PASSWORD: '',
    });
    expect(generated.code, generated.stderr).toBe(0);
    expect(JSON.parse(generated.stdout)).toEqual({
      privateKeyFile: `${prefix}.key`,
      publicKeyFile: `${prefix}.pub`,
    });
    expect((await stat(`${prefix}.key`)).mode & 0o777).toBe(0o600);
    const signer = await loadPrivateKey(await readFile(`${prefix}.key`, 'utf8'), '');
    expect(signer.keyId).toBe(loadPublicKey(await readFile(`${prefix}.pub`, 'utf8')).keyId);
    const again = await splinter(['key', 'generate', '--output-key-prefix', prefix], {
      ...env,
      COSIGN_PASSWORD: 'x',
    });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^splinter: OUTPUT_EXISTS: /);
  });

  it('maps errors to documented exit codes with one-line messages', async () => {
    const unknown = await splinter(
      ['patch', 'pull', 'patches/demo:9.9.9', '--output', join(work, 'x'), ...trust],
      env,
    );
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/^splinter: NOT_FOUND: .*9\.9\.9/);
    const badReference = await splinter(['inspect', 'Not A Reference'], env);
    expect(badReference.code).toBe(2);
    expect(badReference.stderr).toMatch(/^splinter: INVALID_REFERENCE: /);
    const badVersion = await splinter(['patch', 'push', SAMPLE, '--realm', 'demo', '--version', '../1'], env);
    expect(badVersion.code).toBe(2);
    const unreachable = await splinter(['inspect', '127.0.0.1:1/nothing:1', '--plain-http', '--json'], env);
    expect(unreachable.code).toBe(6);
    expect(JSON.parse(unreachable.stdout).error.code).toMatch(/REGISTRY_UNREACHABLE|RETRIES_EXHAUSTED/);
  }, 120_000);
});

import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, loadPrivateKey, loadPublicKey, writeKeyPair } from '@splinter/sign';
import { type RunningRegistry, requireTool, startFaultProxy, startRegistry } from '@splinter/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, tempDir } from '../packages/pack/test/helpers.js';
import { run, SAMPLE, SAMPLE_MOD, splinterCli } from './support.js';

const splinter = splinterCli;

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

  it('uploads no blob when an unchanged tree is pushed again', async () => {
    const again = await splinter(
      ['patch', 'push', SAMPLE, '--realm', 'demo', '--version', '1.0.1', '--json', ...sign],
      env,
    );
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).blobs).toMatchObject({ uploaded: 0, mounted: 0 });
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
    const firstBlobs = JSON.parse(first.stdout).blobs as { uploaded: number; mounted: number };
    // The new content is uploaded; only the shared 2-byte empty config may come by mount already.
    expect(firstBlobs.uploaded).toBeGreaterThanOrEqual(2);
    expect(firstBlobs.uploaded + firstBlobs.mounted).toBe(3);
    const second = await push('na-2');
    expect(second.code, second.stderr).toBe(0);
    const blobs = JSON.parse(second.stdout).blobs as { uploaded: number; mounted: number };
    expect(blobs.uploaded).toBe(0);
    expect(blobs.mounted).toBe(3);
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
  });

  it('leaves no partial tree when a blob in the store is corrupt, and says so in one line', async () => {
    const pushed = await splinter(
      ['patch', 'push', SAMPLE, '--realm', 'corrupt', '--version', '1', '--json', ...sign],
      env,
    );
    const manifestDigest = JSON.parse(pushed.stdout).digest as string;
    const blobs = join(env.SPLINTER_HOME!, 'store', 'blobs', 'sha256');
    const manifest = JSON.parse(await readFile(join(blobs, manifestDigest.slice(7)), 'utf8')) as {
      layers: Array<{ digest: string }>;
    };
    const victim = join(blobs, manifest.layers[0]!.digest.slice(7));
    const original = await readFile(victim);
    const damaged = Buffer.from(original);
    damaged[damaged.length - 1]! ^= 0xff;
    await writeFile(victim, damaged);
    try {
      const pulled = await splinter(
        ['patch', 'pull', 'patches/corrupt:1', '--output', join(work, 'corrupt-out'), ...trust],
        env,
      );
      expect(pulled.code).toBe(4);
      expect(pulled.stderr.trim().split('\n')).toHaveLength(1);
      expect(pulled.stderr).toMatch(/DIGEST_MISMATCH|ARCHIVE_INVALID/);
      const leftovers = (await readdir(work)).filter(
        (name) => name.startsWith('corrupt-out') || name.startsWith('.splinter-staging'),
      );
      expect(leftovers).toEqual([]);
    } finally {
      await writeFile(victim, original);
    }
  });

  it('refuses content a hostile mirror altered in transit, keeping neither the tree nor the blob', async () => {
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
      const manifestDigest = JSON.parse(pushed.stdout).digest as string;
      proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'corrupt', offset: 10 } });
      const dockerConfig = join(work, 'mirror-docker');
      await run('mkdir', ['-p', dockerConfig]);
      const auth = Buffer.from(`${registry.username}:${registry.password}`).toString('base64');
      await writeFile(
        join(dockerConfig, 'config.json'),
        JSON.stringify({ auths: { [proxy.host]: { auth } } }),
      );
      const client = { ...env, SPLINTER_HOME: join(work, 'mirror-home'), DOCKER_CONFIG: dockerConfig };
      const pulled = await splinter(
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
      expect(pulled.stderr).toMatch(/^splinter: DIGEST_MISMATCH: /);
      expect(pulled.code).toBe(4);
      expect(
        (await readdir(work)).filter((n) => n.startsWith('mirror-out') || n.startsWith('.splinter-staging')),
      ).toEqual([]);
      const cached = await readdir(join(work, 'mirror-home', 'store', 'blobs', 'sha256')).catch(() => []);
      expect(cached).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it('refuses to overwrite a non-empty output without --replace', async () => {
    const output = join(work, 'occupied');
    await run('mkdir', ['-p', output]);
    await writeFile(join(output, 'save.dat'), 'player progress');
    const pulled = await splinter(['patch', 'pull', 'patches/demo:1.0.0', '--output', output, ...trust], env);
    expect(pulled.code).toBe(2);
    expect(pulled.stderr).toMatch(/^splinter: OUTPUT_EXISTS: /);
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

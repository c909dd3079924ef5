import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import {
  BlobCopier,
  copyGraph,
  type Descriptor,
  descriptorFor,
  dockerConfigCredentials,
  EMPTY_JSON,
  MediaType,
  OciLayoutTarget,
  RegistryTarget,
  type RegistryTargetOptions,
  readAllLimited,
} from '@splintertree/oci';
import {
  errorCodeOf,
  type RunningRegistry,
  requireTool,
  startFaultProxy,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestFor } from './conformance.js';

const run = promisify(execFile);
const FAST_RETRY = { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 2_000, maxElapsedMs: 10_000 };

function targetFor(
  registry: RunningRegistry,
  repository: string,
  extra: Partial<RegistryTargetOptions> = {},
) {
  return new RegistryTarget({
    registry: registry.host,
    repository,
    plainHttp: true,
    credentials: dockerConfigCredentials(registry.dockerConfigDir),
    retry: FAST_RETRY,
    ...extra,
  });
}

async function pushArtifact(target: RegistryTarget, layerBytes: Buffer, tag?: string) {
  const layer = descriptorFor('application/vnd.example.layer', layerBytes);
  await target.push(descriptorFor(MediaType.Empty, EMPTY_JSON), EMPTY_JSON);
  await target.push(layer, layerBytes);
  const manifest = manifestFor([layer]);
  await target.push(manifest.descriptor, manifest.bytes);
  if (tag) await target.tag(manifest.descriptor, tag);
  return { layer, manifest };
}

async function bytesOf(target: RegistryTarget, desc: Descriptor): Promise<Buffer> {
  return readAllLimited(await target.fetch(desc), 64 * 1024 * 1024);
}

describe('registry client against CNCF Distribution', () => {
  let open: RunningRegistry;
  const skopeo = requireTool('skopeo');
  beforeAll(async () => {
    open = await startRegistry();
  });
  afterAll(async () => {
    await open?.stop();
  });

  it('uploads large blobs in chunks with Content-Range and reads them back', async () => {
    const target = targetFor(open, 'chunked/repo', { chunkThreshold: 1024 * 1024, chunkSize: 256 * 1024 });
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const desc = descriptorFor('application/octet-stream', data);
    await target.push(desc, data);
    expect(target.stats.chunks).toBe(13);
    expect((await bytesOf(target, desc)).equals(data)).toBe(true);
    await target.close();
  });

  it('mounts a blob from another repository instead of uploading it', async () => {
    const source = targetFor(open, 'mount/source');
    const destination = targetFor(open, 'mount/destination');
    const { manifest } = await pushArtifact(source, randomBytes(200_000), 'v1');
    const uploadsBefore = destination.stats.blobUploads;
    const stats = await copyGraph(source, destination, manifest.descriptor, {
      mountFrom: () => ['mount/source'],
    });
    expect(stats.mounted).toBe(2);
    expect(stats.transferred).toBe(0);
    expect(destination.stats.blobUploads).toBe(uploadsBefore);
    expect((await destination.resolve(manifest.descriptor.digest)).digest).toBe(manifest.descriptor.digest);
    const again = await copyGraph(source, destination, manifest.descriptor);
    expect(again).toMatchObject({ transferred: 0, mounted: 0, reused: 2, manifests: 0 });
    await Promise.all([source.close(), destination.close()]);
  });

  it('copies blobs as they are handed over, skipping those it has, and stops at the first wrong one', async () => {
    const target = targetFor(open, 'copier/repo');
    const blobs = [randomBytes(300_000), randomBytes(200_000), randomBytes(100_000)];
    const descriptors = blobs.map((bytes) => descriptorFor('application/octet-stream', bytes));
    await target.push(descriptors[0]!, blobs[0]!);
    const planned: number[] = [];
    const copier = new BlobCopier(target, {
      concurrency: 2,
      onProgress: (event) => {
        if (event.type === 'planned') planned.push(event.bytes);
      },
    });
    copier.add(descriptors[0]!, { open: async () => Readable.from([blobs[0]!]), verified: false });
    copier.add(descriptors[1]!, { open: async () => Readable.from([blobs[1]!]), verified: false });
    copier.add(descriptors[1]!, { open: async () => Readable.from([blobs[1]!]), verified: false });
    expect(await copier.finish([])).toMatchObject({
      transferred: 1,
      reused: 1,
      manifests: 0,
      bytes: 200_000,
    });
    expect(planned).toEqual([300_000, 200_000]);
    expect((await bytesOf(target, descriptors[1]!)).equals(blobs[1]!)).toBe(true);

    // A source that changed after it was hashed: the registry's commit check refuses it, nothing is kept,
    // and the copier takes no more work.
    const changed = Buffer.from(blobs[2]!);
    changed[5] = changed[5]! ^ 1;
    copier.add(descriptors[2]!, { open: async () => Readable.from([changed]), verified: false });
    expect(await errorCodeOf(copier.drain())).toBe('DIGEST_MISMATCH');
    expect(await target.exists(descriptors[2]!)).toBe(false);
    expect(() =>
      copier.add(descriptors[2]!, { open: async () => Readable.from([blobs[2]!]), verified: false }),
    ).toThrow(/DIGEST_INVALID/);
    await target.close();
  });

  it('refuses a manifest over 4 MiB before sending it', async () => {
    const target = targetFor(open, 'big/manifest');
    const layers = Array.from({ length: 30_000 }, (_, i) => ({
      ...descriptorFor('application/vnd.example.layer', Buffer.from(String(i))),
      annotations: { 'org.opencontainers.image.title': `file-${i}-${'x'.repeat(100)}` },
    }));
    const big = manifestFor(layers);
    expect(big.bytes.byteLength).toBeGreaterThan(4 * 1024 * 1024);
    const requestsBefore = target.stats.requests;
    expect(await errorCodeOf(target.push(big.descriptor, big.bytes))).toBe('MANIFEST_TOO_LARGE');
    expect(target.stats.requests).toBe(requestsBefore);
    await target.close();
  });

  it('writes the referrers fallback index that skopeo reads, and lists referrers from it', async () => {
    const target = targetFor(open, 'referrers/repo');
    const { layer, manifest } = await pushArtifact(target, randomBytes(1000), 'v1');
    const signature = manifestFor([layer], {
      artifactType: 'application/vnd.example.signature',
      subject: manifest.descriptor,
      annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
    });
    await target.push(signature.descriptor, signature.bytes);
    const fallbackTag = `sha256-${manifest.descriptor.digest.slice(7)}`;
    const { stdout } = await run(skopeo, [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${open.host}/referrers/repo:${fallbackTag}`,
    ]);
    const index = JSON.parse(stdout) as { mediaType: string; manifests: Descriptor[] };
    expect(index.mediaType).toBe(MediaType.ImageIndex);
    expect(index.manifests).toEqual([
      expect.objectContaining({
        digest: signature.descriptor.digest,
        artifactType: 'application/vnd.example.signature',
        annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
      }),
    ]);
    await target.push(signature.descriptor, signature.bytes); // pushing again must not duplicate the entry
    expect((await target.referrers(manifest.descriptor)).map((d) => d.digest)).toEqual([
      signature.descriptor.digest,
    ]);
    expect(await target.referrers(manifest.descriptor, 'application/vnd.other')).toEqual([]);
    await target.close();
  });

  it('pushes what skopeo copies to an OCI layout byte for byte, and reads what skopeo pushed', async () => {
    const target = targetFor(open, 'interop/ours');
    const { layer, manifest } = await pushArtifact(target, randomBytes(50_000), 'v1');
    const dir = await mkdtemp(join(tmpdir(), 'splinter-skopeo-'));
    try {
      await run(skopeo, [
        'copy',
        '--src-tls-verify=false',
        `docker://${open.host}/interop/ours:v1`,
        `oci:${join(dir, 'a')}:v1`,
      ]);
      const layout = await OciLayoutTarget.open(join(dir, 'a'));
      expect((await layout.resolve('v1')).digest).toBe(manifest.descriptor.digest);
      const layerCopy = await readAllLimited(await layout.fetch(layer), 1 << 20);
      expect(layerCopy.equals(await bytesOf(target, layer))).toBe(true);

      await run(skopeo, [
        'copy',
        '--dest-tls-verify=false',
        `oci:${join(dir, 'a')}:v1`,
        `docker://${open.host}/interop/theirs:v2`,
      ]);
      const theirs = targetFor(open, 'interop/theirs');
      const resolved = await theirs.resolve('v2');
      expect(resolved.digest).toBe(manifest.descriptor.digest);
      expect((await bytesOf(theirs, layer)).equals(layerCopy)).toBe(true);
      await theirs.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
      await target.close();
    }
  });

  describe('through a fault-injecting proxy', () => {
    it('retries 503s and honours 429 Retry-After', async () => {
      const proxy = await startFaultProxy(open.host);
      const target = targetFor({ ...open, host: proxy.host }, 'faults/retry');
      try {
        proxy.add({ method: 'HEAD', path: /\/blobs\//, fault: { kind: 'status', status: 503 }, times: 2 });
        const data = randomBytes(10_000);
        const desc = descriptorFor('application/octet-stream', data);
        await target.push(desc, data);
        expect(target.stats.retries).toBe(2);

        proxy.add({
          method: 'GET',
          path: /\/blobs\//,
          fault: { kind: 'status', status: 429, headers: { 'retry-after': '1' } },
          times: 1,
        });
        const started = Date.now();
        expect((await bytesOf(target, desc)).equals(data)).toBe(true);
        expect(Date.now() - started).toBeGreaterThanOrEqual(950);
      } finally {
        await target.close();
        await proxy.stop();
      }
    });

    it('resumes a download with Range after the connection drops mid-blob', async () => {
      const proxy = await startFaultProxy(open.host);
      const direct = targetFor(open, 'faults/resume');
      const target = targetFor({ ...open, host: proxy.host }, 'faults/resume');
      try {
        const data = randomBytes(2 * 1024 * 1024);
        const desc = descriptorFor('application/octet-stream', data);
        await direct.push(desc, data);
        proxy.add({
          method: 'GET',
          path: /\/blobs\/sha256/,
          fault: { kind: 'reset-after', bytes: 700_000 },
          times: 2,
        });
        expect((await bytesOf(target, desc)).equals(data)).toBe(true);
        expect(target.stats.resumes).toBe(2);
      } finally {
        await Promise.all([target.close(), direct.close()]);
        await proxy.stop();
      }
    });

    it('survives a slow body', async () => {
      const proxy = await startFaultProxy(open.host);
      const target = targetFor({ ...open, host: proxy.host }, 'faults/slow');
      try {
        const data = randomBytes(200_000);
        const desc = descriptorFor('application/octet-stream', data);
        await target.push(desc, data);
        proxy.add({ method: 'GET', path: /\/blobs\/sha256/, fault: { kind: 'slow', delayMs: 30 } });
        expect((await bytesOf(target, desc)).equals(data)).toBe(true);
      } finally {
        await target.close();
        await proxy.stop();
      }
    });

    it('stops with RETRIES_EXHAUSTED within the bound when the faults never stop', async () => {
      const proxy = await startFaultProxy(open.host);
      const target = targetFor({ ...open, host: proxy.host }, 'faults/forever');
      try {
        proxy.add({ path: /.*/, fault: { kind: 'status', status: 503 } });
        const started = Date.now();
        const data = randomBytes(100);
        expect(await errorCodeOf(target.push(descriptorFor('application/octet-stream', data), data))).toBe(
          'RETRIES_EXHAUSTED',
        );
        expect(Date.now() - started).toBeLessThan(FAST_RETRY.maxElapsedMs);
        expect(proxy.log.length).toBe(FAST_RETRY.maxAttempts);
      } finally {
        await target.close();
        await proxy.stop();
      }
    });
  });
});

describe('registry authentication', () => {
  it('Basic auth: works with the right password, REGISTRY_UNAUTHORIZED with a wrong one or none', async () => {
    const registry = await startRegistry({ auth: 'htpasswd' });
    try {
      const good = targetFor(registry, 'auth/basic');
      await pushArtifact(good, randomBytes(100), 'v1');
      await good.close();
      const wrong = targetFor(registry, 'auth/basic', {
        credentials: async () => ({ username: 'splinter', password: 'nope' }),
      });
      expect(await errorCodeOf(wrong.resolve('v1'))).toBe('REGISTRY_UNAUTHORIZED');
      const none = targetFor(registry, 'auth/basic', { credentials: async () => undefined });
      const refused = await none.resolve('v1').catch((error: unknown) => error);
      // The fact and the registry; the CLI turns the reason into `run splinter login HOST`.
      expect(refused).toMatchObject({
        code: 'REGISTRY_UNAUTHORIZED',
        message: expect.not.stringMatching(/splinter login/),
        details: { reason: 'login-required', registry: registry.host },
      });
      await Promise.all([wrong.close(), none.close()]);
    } finally {
      await registry.stop();
    }
  });

  it('Bearer tokens: fetched once per scope and cached, refused for a wrong password', async () => {
    const registry = await startRegistry({ auth: 'token' });
    try {
      const target = targetFor(registry, 'auth/token');
      for (let i = 0; i < 5; i++) await pushArtifact(target, randomBytes(100), `v${i}`);
      // One token for pull,push; reads reuse their own scope's token.
      expect(registry.tokenService!.requests).toBeLessThanOrEqual(3);
      expect(registry.tokenService!.scopes).toContain('repository:auth/token:pull,push');
      await target.close();
      const wrong = targetFor(registry, 'auth/token', {
        credentials: async () => ({ username: 'splinter', password: 'nope' }),
      });
      expect(await errorCodeOf(wrong.resolve('v1'))).toBe('REGISTRY_UNAUTHORIZED');
      await wrong.close();
    } finally {
      await registry.stop();
    }
  });

  it('reads credentials through a docker credential helper named in config.json', async () => {
    const registry = await startRegistry({ auth: 'htpasswd' });
    const dir = await mkdtemp(join(tmpdir(), 'splinter-credhelper-'));
    const originalPath = process.env.PATH;
    try {
      const bin = join(dir, 'bin');
      await mkdir(bin);
      const helper = join(bin, 'docker-credential-splintertest');
      await writeFile(
        helper,
        `#!/bin/sh\nread server\n[ "$server" = "${registry.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\n` +
          `printf '{"ServerURL":"%s","Username":"${registry.username}","Secret":"${registry.password}"}' "$server"\n`,
      );
      await chmod(helper, 0o755);
      await writeFile(
        join(dir, 'config.json'),
        JSON.stringify({ credHelpers: { [registry.host]: 'splintertest' } }),
      );
      process.env.PATH = `${bin}:${originalPath}`;
      const target = new RegistryTarget({
        registry: registry.host,
        repository: 'auth/helper',
        plainHttp: true,
        dockerConfigDir: dir,
      });
      await pushArtifact(target, randomBytes(64), 'v1');
      expect((await target.resolve('v1')).mediaType).toBe(MediaType.ImageManifest);
      await target.close();
      expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).credHelpers).toBeDefined();
    } finally {
      process.env.PATH = originalPath;
      await rm(dir, { recursive: true, force: true });
      await registry.stop();
    }
  });
});

import { randomBytes } from 'node:crypto';
import {
  type Descriptor,
  descriptorFor,
  dockerConfigCredentials,
  RegistryTarget,
  readAllLimited,
} from '@splintertree/oci';
import { errorCodeOf, type RunningRegistry, startFaultProxy, startRegistry } from '@splintertree/testkit';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const FAST_RETRY = { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 200, maxElapsedMs: 5_000 };
const BLOB_GET = /\/blobs\/sha256:/;
const REPOSITORY = 'origin/blobs';

async function pushBlob(registry: RunningRegistry): Promise<Descriptor> {
  const data = randomBytes(200_000);
  const desc = descriptorFor('application/octet-stream', data);
  const direct = new RegistryTarget({
    registry: registry.host,
    repository: REPOSITORY,
    plainHttp: true,
    credentials: dockerConfigCredentials(registry.dockerConfigDir),
  });
  await direct.push(desc, data);
  await direct.close();
  return desc;
}

/** The registry's own login, offered for whatever host the target names (the proxy). */
function loginOf(registry: RunningRegistry) {
  return async () => ({ username: registry.username!, password: registry.password! });
}

describe('registry credentials stay with the registry origin', () => {
  for (const auth of ['htpasswd', 'token'] as const) {
    describe(`auth ${auth}`, () => {
      let registry: RunningRegistry;
      let desc: Descriptor;
      beforeAll(async () => {
        registry = await startRegistry({ auth });
        desc = await pushBlob(registry);
      });
      afterAll(async () => {
        await registry?.stop();
      });

      it('never answers a storage host’s own challenge with them', async () => {
        const proxy = await startFaultProxy(registry.host);
        const target = new RegistryTarget({
          registry: proxy.host,
          repository: REPOSITORY,
          plainHttp: true,
          credentials: loginOf(registry),
          retry: FAST_RETRY,
        });
        try {
          proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'redirect', challenge: true } });
          expect(await errorCodeOf((async () => readAllLimited(await target.fetch(desc), 1 << 20))())).toBe(
            'REDIRECT_REFUSED',
          );
          expect(await errorCodeOf(target.fetchRange(desc, 0, 10))).toBe('REDIRECT_REFUSED');
          const storage = proxy.log.filter((entry) => entry.listener === 'storage');
          expect(storage.length).toBeGreaterThan(0);
          expect(storage.filter((entry) => entry.status === 401).length).toBe(storage.length);
          expect(storage.map((entry) => entry.authorization)).toEqual(storage.map(() => undefined));
          // The registry's own requests carried them all along: the rule is per origin, not "never".
          const registryGets = proxy.log.filter(
            (entry) => entry.listener === 'registry' && entry.status === 307,
          );
          expect(registryGets.length).toBeGreaterThan(0);
          expect(registryGets.every((entry) => entry.authorization !== undefined)).toBe(true);
        } finally {
          await target.close();
          await proxy.stop();
        }
      });
    });
  }

  describe('an https registry', () => {
    let registry: RunningRegistry;
    let desc: Descriptor;
    beforeAll(async () => {
      registry = await startRegistry({ auth: 'htpasswd' });
      desc = await pushBlob(registry);
    });
    afterAll(async () => {
      await registry?.stop();
    });

    it('never sends them over plain http when the registry redirects to http:// on its own host and port', async () => {
      const proxy = await startFaultProxy(registry.host, { tls: true });
      const agent = new Agent({ connect: { ca: proxy.certificate } });
      const target = new RegistryTarget({
        registry: proxy.host,
        repository: REPOSITORY,
        credentials: loginOf(registry),
        retry: FAST_RETRY,
        dispatcher: agent,
      });
      try {
        // Over TLS the login works as usual.
        const read = await target.fetchRange(desc, 5, 15);
        expect((await readAllLimited(read.stream, 1024)).byteLength).toBe(10);
        expect(proxy.log.some((entry) => entry.secure && entry.authorization?.startsWith('Basic '))).toBe(
          true,
        );

        proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'downgrade' } });
        // Same host and port, plain http: the registry behind answers 401, and that challenge is not the
        // registry origin's, so the client does not log in there.
        expect(await errorCodeOf(target.fetchRange(desc, 5, 15))).toBe('REDIRECT_REFUSED');
        const plain = proxy.log.filter((entry) => !entry.secure);
        expect(plain.length).toBeGreaterThan(0);
        expect(plain.map((entry) => entry.status)).toEqual(plain.map(() => 401));
        expect(plain.map((entry) => entry.authorization)).toEqual(plain.map(() => undefined));
      } finally {
        await target.close();
        await agent.close();
        await proxy.stop();
      }
    });
  });

  describe('an https registry whose token service is plain http', () => {
    let registry: RunningRegistry;
    beforeAll(async () => {
      registry = await startRegistry({ auth: 'token' });
      await pushBlob(registry);
    });
    afterAll(async () => {
      await registry?.stop();
    });

    it('does not send the login to the http realm, and says why', async () => {
      const proxy = await startFaultProxy(registry.host, { tls: true });
      const agent = new Agent({ connect: { ca: proxy.certificate } });
      const target = new RegistryTarget({
        registry: proxy.host,
        repository: REPOSITORY,
        credentials: loginOf(registry),
        retry: FAST_RETRY,
        dispatcher: agent,
      });
      const tokenRequestsBefore = registry.tokenService!.requests;
      try {
        const failure = await target.resolve('latest').then(
          () => undefined,
          (error: unknown) => error as { code: string; message: string },
        );
        expect(failure?.code).toBe('REGISTRY_UNAUTHORIZED');
        expect(failure?.message).toMatch(/plain http/);
        expect(registry.tokenService!.requests).toBe(tokenRequestsBefore);
      } finally {
        await target.close();
        await agent.close();
        await proxy.stop();
      }
    });

    it('still fetches an anonymous token from it when there is no login to leak', async () => {
      const proxy = await startFaultProxy(registry.host, { tls: true });
      const agent = new Agent({ connect: { ca: proxy.certificate } });
      const target = new RegistryTarget({
        registry: proxy.host,
        repository: REPOSITORY,
        credentials: async () => undefined,
        retry: FAST_RETRY,
        dispatcher: agent,
      });
      const tokenRequestsBefore = registry.tokenService!.requests;
      try {
        // The test token service refuses anonymous requests: the point is that it was asked, without a login.
        expect(await errorCodeOf(target.resolve('latest'))).toBe('REGISTRY_UNAUTHORIZED');
        expect(registry.tokenService!.requests).toBe(tokenRequestsBefore + 1);
      } finally {
        await target.close();
        await agent.close();
        await proxy.stop();
      }
    });
  });
});

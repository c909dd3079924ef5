import { randomBytes } from 'node:crypto';
import { LISTENER_APPLICATION_NAME, type RunningApi, startApi } from '@splintertree/api';
import { AccessStore, type ChainStore, type SqlClient } from '@splintertree/chain';
import {
  createLauncherToken,
  requestUnlock,
  type Settings,
  type Splinter,
  settingsFromEnvironment,
} from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { errorCodeOf, type FreshDatabase } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, eventually, openBackend, registerPreloaded } from './helpers.js';

describe('launcher API server (in process, real PostgreSQL, real HTTP on loopback)', () => {
  let backend: Backend;
  let database: FreshDatabase;
  let settings: Settings;
  let splinter: Splinter;
  let client: SqlClient;
  let chain: ChainStore;
  let api: RunningApi;
  let token: string;
  const kek = generatePatchKey();

  const preloaded = (realm: string, version: string, parent?: string) =>
    registerPreloaded(chain, kek, { realm, version, parent });

  const unlock = (id: string, bearer = token) =>
    fetch(`${api.url}/launcher/patches/${id}/unlock`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bearer}` },
    });

  beforeAll(async () => {
    backend = await openBackend('api', kek);
    ({ database, settings, splinter, token, client, chain } = backend);
    api = await startApi(settings, { port: '0', logLevel: 'silent', rateLimit: '1000', burst: '1000' });
  });
  afterAll(async () => {
    await api?.close();
    await backend?.close();
  });

  it('reports every configuration problem at start-up, one message each, before binding a port', async () => {
    const bad = settingsFromEnvironment({ SPLINTER_HOME: '/tmp/nowhere' });
    const error = await startApi(bad, { port: '99999', burst: 'x' }).then(
      () => undefined,
      (e: unknown) => e as Error & { code: string; details: { problems: string[] } },
    );
    expect(error?.code).toBe('INVALID_CONFIG');
    expect(error?.details.problems).toEqual([
      '--port must be from 0 to 65535',
      '--burst must be a whole number',
      expect.stringContaining('DATABASE_URL is not set'),
      expect.stringContaining('set SPLINTER_KEK or SPLINTER_KEK_FILE'),
    ]);
    const wrongKek = settingsFromEnvironment({
      DATABASE_URL: database.url,
      SPLINTER_KEK: randomBytes(32).toString('base64'),
    });
    await preloaded('eu-1', 'kek-check');
    expect(await errorCodeOf(startApi(wrongKek, { port: '0', logLevel: 'silent' }))).toBe('KEK_MISMATCH');
  });

  it('answers health, readiness and Prometheus metrics', async () => {
    expect(await (await fetch(`${api.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${api.url}/readyz`)).json()).toEqual({
      ready: true,
      database: true,
      listening: true,
    });
    await unlock('424242');
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    expect(metrics).toContain(
      'splinter_api_requests_total{route="/launcher/patches/:id/unlock",method="POST",status="404"}',
    );
    expect(metrics).toContain('splinter_api_unlocks_total{outcome="PATCH_UNKNOWN"}');
    expect(metrics).toContain('splinter_api_request_duration_seconds_bucket');
    const missing = await fetch(`${api.url}/nowhere`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'NOT_FOUND', status: 404 });
  });

  it('releases a key the moment its activation commits, every time (no waiting for the notification)', async () => {
    let parent: string | undefined;
    for (let i = 0; i < 25; i++) {
      const patch = await preloaded('eu-1', `race-${i}`, parent);
      expect((await unlock(patch.id)).status).toBe(423);
      await chain.activate({ patchId: patch.id, actor: 'test', force: true });
      const response = await unlock(patch.id);
      expect(response.status, `round ${i}`).toBe(200);
      expect(((await response.json()) as { key: string }).key).toBe(patch.key);
      parent = patch.id;
    }
  });

  it('releases with a key the keys of its sealed ancestors, whose records the version reuses', async () => {
    const first = await preloaded('eu-1', 'chain-a');
    const second = await preloaded('eu-1', 'chain-b', first.id);
    await chain.activate({ patchId: second.id, actor: 'test', force: true });
    const response = await unlock(second.id);
    expect(response.status).toBe(200);
    const grant = (await response.json()) as {
      key: string;
      ancestors: Array<{ patchId: string; key: string }>;
    };
    expect(grant.key).toBe(second.key);
    expect(grant.ancestors).toContainEqual(expect.objectContaining({ patchId: first.id, key: first.key }));
    expect(grant.ancestors.some((a) => a.patchId === second.id)).toBe(false);
  });

  it('answers a concurrent poll storm on a locked patch correctly, before and right after activation', async () => {
    const patch = await preloaded('eu-1', 'storm');
    const storm = async () =>
      (await Promise.all(Array.from({ length: 100 }, () => unlock(patch.id)))).map((r) => r.status);
    expect(new Set(await storm())).toEqual(new Set([423]));
    const during = storm();
    await chain.activate({ patchId: patch.id, actor: 'test', force: true });
    expect((await during).every((status) => status === 423 || status === 200)).toBe(true);
    expect(new Set(await storm())).toEqual(new Set([200]));
  });

  it('drops cached grants on rollback and revocation as their notifications arrive', async () => {
    const a = await preloaded('eu-1', 'cache-a');
    await chain.activate({ patchId: a.id, actor: 'test', force: true });
    const b = await preloaded('eu-1', 'cache-b', a.id);
    await chain.activate({ patchId: b.id, actor: 'test' });
    expect((await unlock(b.id)).status).toBe(200);
    expect((await unlock(b.id)).status).toBe(200); // now served from the cache
    await chain.rollback({ realm: 'eu-1', actor: 'test' });
    expect(await eventually(async () => (await unlock(b.id)).status, 423)).toBe(423);
    await chain.revokePatch(b.id);
    expect((await unlock(b.id)).status).toBe(410);
  });

  it('knows each patch and token by its canonical id only: an alias is unknown, before and after revocation', async () => {
    const patch = await preloaded('eu-1', 'alias');
    await chain.activate({ patchId: patch.id, actor: 'test', force: true });
    const created = await createLauncherToken(splinter, { realm: 'eu-1', label: 'aliased' });
    const secret = created.token.slice(`spl_${created.id}_`.length);
    expect((await unlock(patch.id, created.token)).status).toBe(200);
    const aliases = [`0${patch.id}`, `00${patch.id}`, `%30${patch.id}`, `+${patch.id}`, `${patch.id}.0`];
    for (const alias of [...aliases, '9223372036854775808', '99999999999999999999']) {
      const response = await unlock(alias, created.token);
      expect(response.status, alias).toBe(404);
      expect(response.headers.get('content-type')).toContain('application/problem+json');
      expect(await response.json(), alias).toMatchObject({ code: 'PATCH_UNKNOWN', status: 404 });
    }
    const aliasToken = `spl_0${created.id}_${secret}`;
    const refused = await unlock(patch.id, aliasToken);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
    await new AccessStore(client).revokeToken(created.id);
    expect(await eventually(async () => (await unlock(patch.id, created.token)).status, 401)).toBe(401);
    expect((await unlock(patch.id, aliasToken)).status).toBe(401);
    expect(
      await errorCodeOf(requestUnlock({ api: api.url, token: created.token, patchId: `0${patch.id}` })),
    ).toBe('INVALID_ARGUMENT');
  });

  it('refuses a revoked token from the moment the revocation commits', async () => {
    const created = await createLauncherToken(splinter, { realm: 'eu-1', label: 'short-lived' });
    const p = await preloaded('eu-1', 'tok');
    expect((await unlock(p.id, created.token)).status).toBe(423);
    await new AccessStore(client).revokeToken(created.id);
    expect(await eventually(async () => (await unlock(p.id, created.token)).status, 401)).toBe(401);
  });

  it('limits each token to its rate (429 with Retry-After) and failed authentications per address', async () => {
    const limited = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      rateLimit: '1',
      burst: '3',
      failureBurst: '3',
    });
    try {
      const own = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const response = await fetch(`${limited.url}/launcher/patches/1/unlock`, {
          method: 'POST',
          headers: { authorization: `Bearer ${own}` },
        });
        statuses.push(response.status);
        if (response.status === 429) {
          expect(response.headers.get('retry-after')).toBe('1');
          expect(((await response.json()) as { code: string }).code).toBe('RATE_LIMITED');
        }
      }
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
      // Another token has its own bucket.
      const other = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
      const fresh = await fetch(`${limited.url}/launcher/patches/1/unlock`, {
        method: 'POST',
        headers: { authorization: `Bearer ${other}` },
      });
      expect(fresh.status).not.toBe(429);
      const guesses: number[] = [];
      for (let i = 0; i < 6; i++) {
        guesses.push(
          (
            await fetch(`${limited.url}/launcher/patches/1/unlock`, {
              method: 'POST',
              headers: {
                authorization: `Bearer spl_1_${randomBytes(32).toString('base64url').slice(0, 43)}`,
              },
            })
          ).status,
        );
      }
      expect(guesses.slice(0, 3)).toEqual([401, 401, 401]);
      expect(guesses.at(-1)).toBe(429);
    } finally {
      await limited.close();
    }
  });

  it('throttles failed authentications per address and per token id, never a valid token', async () => {
    const patch = await preloaded('eu-1', 'failures');
    // The request budget equals the failure budget: the code before this one charged failures to it.
    const limited = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      rateLimit: '1',
      burst: '3',
      failureRate: '1',
      failureBurst: '3',
      trustProxy: '127.0.0.1',
    });
    try {
      const post = (bearer: string, from: string) =>
        fetch(`${limited.url}/launcher/patches/${patch.id}/unlock`, {
          method: 'POST',
          headers: { authorization: `Bearer ${bearer}`, 'x-forwarded-for': from },
        });
      const wrongSecret = () => randomBytes(32).toString('base64url').slice(0, 43);
      let unknownId = 900_000;
      const stranger = () => `spl_${unknownId++}_${wrongSecret()}`;

      const flood: number[] = [];
      for (let i = 0; i < 10; i++) flood.push((await post(stranger(), '203.0.113.7')).status);
      expect(flood.slice(0, 3)).toEqual([401, 401, 401]);
      expect(flood.at(-1)).toBe(429);
      expect(flood.filter((status) => status === 429).length).toBeGreaterThanOrEqual(5);
      const throttled = await post(stranger(), '203.0.113.7');
      expect(throttled.status).toBe(429);
      expect(throttled.headers.get('retry-after')).toBe('1');
      expect(await throttled.json()).toMatchObject({ code: 'RATE_LIMITED' });

      // A valid token from the flooded address is served, every time.
      const own = await createLauncherToken(splinter, { realm: 'eu-1', label: 'flooded address' });
      for (let i = 0; i < 3; i++) expect((await post(own.token, '203.0.113.7')).status).toBe(423);
      // Another address has a budget of its own.
      expect((await post(stranger(), '198.51.100.9')).status).toBe(401);

      // Guesses at one token's secret are limited per token id, from whatever address...
      const target = await createLauncherToken(splinter, { realm: 'eu-1', label: 'guessed at' });
      const guesses: number[] = [];
      for (let i = 0; i < 5; i++) {
        guesses.push((await post(`spl_${target.id}_${wrongSecret()}`, `192.0.2.${i + 1}`)).status);
      }
      expect(guesses.slice(0, 3)).toEqual([401, 401, 401]);
      expect(guesses.at(-1)).toBe(429);
      // ...and the token itself still works.
      expect((await post(target.token, '192.0.2.200')).status).toBe(423);
      const metrics = await (await fetch(`${limited.url}/metrics`)).text();
      expect(metrics).toMatch(/splinter_api_auth_failures_total\{throttled="true"\} \d+/);
    } finally {
      await limited.close();
    }
  });

  it('takes the client address from X-Forwarded-For only when the peer is a trusted proxy', async () => {
    const strangers = async (url: string) => {
      const statuses: number[] = [];
      for (let i = 1; i <= 3; i++) {
        const response = await fetch(`${url}/launcher/patches/1/unlock`, {
          method: 'POST',
          headers: {
            authorization: `Bearer spl_${800_000 + i}_${randomBytes(32).toString('base64url').slice(0, 43)}`,
            'x-forwarded-for': `203.0.113.${i}`,
          },
        });
        statuses.push(response.status);
      }
      return statuses;
    };
    for (const [trustProxy, expected] of [
      [undefined, [401, 401, 429]],
      ['10.0.0.0/8, 192.168.0.1', [401, 401, 429]],
      ['loopback', [401, 401, 401]],
      ['true', [401, 401, 401]],
    ] as const) {
      const running = await startApi(settings, {
        port: '0',
        logLevel: 'silent',
        failureRate: '1',
        failureBurst: '2',
        trustProxy,
      });
      try {
        expect(await strangers(running.url), String(trustProxy)).toEqual(expected);
      } finally {
        await running.close();
      }
    }
    const refused = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      trustProxy: '10.0.0.0/33',
    }).then(
      () => undefined,
      (e: unknown) => e as Error & { code: string; details: { problems: string[] } },
    );
    expect(refused?.code).toBe('INVALID_CONFIG');
    expect(refused?.details.problems).toEqual([expect.stringContaining('--trust-proxy must be')]);
  });

  it('survives losing its LISTEN connection: not ready meanwhile, answers stay correct, listens again', async () => {
    const p = await preloaded('eu-1', 'listen-loss');
    await client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = $1`,
      [LISTENER_APPLICATION_NAME],
    );
    expect(await eventually(async () => (await fetch(`${api.url}/readyz`)).status, 503)).toBe(503);
    expect((await unlock(p.id)).status).toBe(423);
    await chain.activate({ patchId: p.id, actor: 'test', force: true });
    expect((await unlock(p.id)).status).toBe(200);
    expect(await eventually(async () => (await fetch(`${api.url}/readyz`)).status, 200, 5000)).toBe(200);
  });
});

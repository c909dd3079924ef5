import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { type RunningApi, startApi } from '@splintertree/api';
import { ChainStore, openPostgres } from '@splintertree/chain';
import {
  createLauncherToken,
  openSplinter,
  type Settings,
  type Splinter,
  settingsFromEnvironment,
} from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { errorCodeOf, type FreshDatabase, freshDatabase, startTcpProxy } from '@splintertree/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerPreloaded } from './helpers.js';

const REDIS = { host: '127.0.0.1', port: 6379 };

const redisUp = await new Promise<boolean>((resolve) => {
  const socket = connect(REDIS.port, REDIS.host);
  socket.once('connect', () => {
    socket.destroy();
    resolve(true);
  });
  socket.once('error', () => resolve(false));
});
if (!redisUp && process.env.CI === 'true') {
  throw new Error(
    `Redis is not reachable at ${REDIS.host}:${REDIS.port}: CI must run the shared-limit tests`,
  );
}

describe.skipIf(!redisUp)('limits shared by replicas through Redis (two real servers, real Redis)', () => {
  let database: FreshDatabase;
  let settings: Settings;
  let splinter: Splinter;
  let redis: Redis;
  const running: RunningApi[] = [];
  const kek = generatePatchKey();
  /** A key prefix of this test's own, so that runs and other tests never share a bucket. */
  const prefix = () => `splinter-test:${randomBytes(6).toString('hex')}:`;

  const start = async (flags: Parameters<typeof startApi>[1]) => {
    const api = await startApi(settings, { port: '0', logLevel: 'silent', ...flags });
    running.push(api);
    return api;
  };
  const view = async (api: RunningApi, bearer: string) =>
    (await fetch(`${api.url}/launcher/realms/eu-1`, { headers: { authorization: `Bearer ${bearer}` } }))
      .status;

  beforeAll(async () => {
    database = await freshDatabase('api_redis', { migrate: true });
    settings = settingsFromEnvironment({
      DATABASE_URL: database.url,
      SPLINTER_KEK: Buffer.from(kek).toString('hex'),
      SPLINTER_HOME: `/tmp/splinter-api-redis-${randomBytes(4).toString('hex')}`,
    });
    splinter = await openSplinter({ settings });
    await createLauncherToken(splinter, { realm: 'eu-1' });
    const client = await openPostgres(database.url);
    const chain = new ChainStore(client);
    await chain.activate({
      patchId: (await registerPreloaded(chain, kek, { realm: 'eu-1', version: '1' })).id,
      actor: 'test',
    });
    await client.close();
    redis = new Redis(REDIS.port, REDIS.host);
  });
  afterAll(async () => {
    for (const api of running) await api.close();
    await redis?.quit();
    await splinter?.close();
    await database?.drop();
  });

  it("shares a token's request budget between two replicas; in memory, each has its own", async () => {
    const token = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
    const keyPrefix = prefix();
    const flags = {
      rateLimit: '1',
      burst: '4',
      redisUrl: `redis://${REDIS.host}:${REDIS.port}`,
      redisPrefix: keyPrefix,
    };
    const [a, b] = [await start(flags), await start(flags)];
    const spent = [];
    for (let i = 0; i < 4; i++) spent.push(await view(i % 2 === 0 ? a : b, token));
    expect(spent).toEqual([200, 200, 200, 200]);
    // The burst is spent across both: each replica, having served only two, refuses the next.
    expect(await view(a, token)).toBe(429);
    expect(await view(b, token)).toBe(429);
    const keys = await redis.keys(`${keyPrefix}*`);
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((key) => key.startsWith(`${keyPrefix}rate:token:`))).toBe(true);
    const ttl = await redis.pttl(keys[0]!);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5000);

    // Control: the same two replicas without Redis let the token spend its burst on each.
    const own = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
    const [c, d] = [await start({ rateLimit: '1', burst: '4' }), await start({ rateLimit: '1', burst: '4' })];
    const local = [];
    for (let i = 0; i < 6; i++) local.push(await view(i % 2 === 0 ? c : d, own));
    expect(local).toEqual([200, 200, 200, 200, 200, 200]);
  });

  it('shares failed-login budgets between replicas, and a valid token is still served on both', async () => {
    const flags = {
      failureRate: '1',
      failureBurst: '3',
      redisUrl: `redis://${REDIS.host}:${REDIS.port}`,
      redisPrefix: prefix(),
    };
    const [a, b] = [await start(flags), await start(flags)];
    const guess = () =>
      `spl_${700_000 + Math.floor(Math.random() * 1000)}_${randomBytes(32).toString('base64url').slice(0, 43)}`;
    const statuses = [
      await view(a, guess()),
      await view(b, guess()),
      await view(a, guess()),
      await view(b, guess()),
    ];
    expect(statuses).toEqual([401, 401, 401, 429]);
    const token = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
    expect([await view(a, token), await view(b, token)]).toEqual([200, 200]);
  });

  it('refuses to start when Redis cannot be reached, and lets requests through when it stops answering', async () => {
    expect(await errorCodeOf(start({ redisUrl: 'redis://127.0.0.1:1' }))).toBe('INVALID_CONFIG');
    expect(await errorCodeOf(start({ redisUrl: 'http://127.0.0.1:6379' }))).toBe('INVALID_CONFIG');

    const proxy = await startTcpProxy(REDIS.host, REDIS.port);
    try {
      const keyPrefix = prefix();
      const api = await start({
        rateLimit: '1',
        burst: '2',
        redisUrl: `redis://${proxy.host}:${proxy.port}`,
        redisPrefix: keyPrefix,
      });
      const token = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
      expect([await view(api, token), await view(api, token), await view(api, token)]).toEqual([
        200, 200, 429,
      ]);
      // Redis goes silent (no FIN, no RST): each check gives up after its timeout and lets the request pass.
      proxy.silence(keyPrefix);
      const started = performance.now();
      expect([await view(api, token), await view(api, token)]).toEqual([200, 200]);
      expect(performance.now() - started).toBeLessThan(3000);
      const metrics = await (await fetch(`${api.url}/metrics`)).text();
      expect(metrics).toMatch(/splinter_api_limit_store_errors_total [1-9]/);
    } finally {
      await proxy.stop();
    }
  });
});

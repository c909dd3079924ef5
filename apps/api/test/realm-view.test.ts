import { type RunningApi, startApi } from '@splintertree/api';
import type { ChainStore } from '@splintertree/chain';
import {
  createLauncherToken,
  fetchRealmView,
  requestRealmView,
  type Settings,
  type Splinter,
} from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, eventually, openBackend, registerPreloaded } from './helpers.js';

describe('realm view caching: ETag, 304, Cache-Control, and a launcher that revalidates and backs off', () => {
  let backend: Backend;
  let settings: Settings;
  let splinter: Splinter;
  let chain: ChainStore;
  let api: RunningApi;
  let token: string;
  const kek = generatePatchKey();

  const view = (headers: Record<string, string> = {}, bearer = token, url = api.url) =>
    fetch(`${url}/launcher/realms/eu-1`, { headers: { authorization: `Bearer ${bearer}`, ...headers } });

  beforeAll(async () => {
    backend = await openBackend('api_view', kek);
    ({ settings, splinter, token, chain } = backend);
    api = await startApi(settings, { port: '0', logLevel: 'silent', rateLimit: '1000', burst: '1000' });
  });
  afterAll(async () => {
    await api?.close();
    await backend?.close();
  });

  it('tags the view with a strong ETag, a short Cache-Control, and answers 304 to a matching If-None-Match', async () => {
    const first = await registerPreloaded(chain, kek, { realm: 'eu-1', version: '1' });
    await chain.activate({ patchId: first.id, actor: 'test' });
    const headOf = async () => ((await (await view()).json()) as { head?: { id: string } }).head?.id;
    const fresh = await eventually(headOf, first.id);
    expect(fresh).toBe(first.id);
    const answer = await view();
    expect(answer.status).toBe(200);
    const etag = answer.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(answer.headers.get('cache-control')).toBe('private, max-age=2');
    const body = await answer.text();

    for (const ifNoneMatch of [etag!, `W/${etag}`, `"other", ${etag}`, '*']) {
      const revalidated = await view({ 'if-none-match': ifNoneMatch });
      expect(revalidated.status, ifNoneMatch).toBe(304);
      expect(revalidated.headers.get('etag')).toBe(etag);
      expect(revalidated.headers.get('cache-control')).toBe('private, max-age=2');
      expect(await revalidated.text()).toBe('');
    }
    const other = await view({ 'if-none-match': '"something else"' });
    expect(other.status).toBe(200);
    expect(await other.text()).toBe(body);

    // A 304 is still an authenticated answer: no token, no view and no tag.
    const anonymous = await fetch(`${api.url}/launcher/realms/eu-1`, { headers: { 'if-none-match': etag! } });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('etag')).toBeNull();
    expect(anonymous.headers.get('cache-control')).toBe('no-store');

    // An activation changes the view, hence its tag, as soon as its notification arrives.
    const second = await registerPreloaded(chain, kek, { realm: 'eu-1', version: '2', parent: first.id });
    await chain.activate({ patchId: second.id, actor: 'test' });
    expect(await eventually(async () => (await view({ 'if-none-match': etag! })).status, 200)).toBe(200);
    const changed = await view({ 'if-none-match': etag! });
    expect(changed.headers.get('etag')).not.toBe(etag);
    expect(((await changed.json()) as { head: { id: string } }).head.id).toBe(second.id);
  });

  it('serves one read of the view for its max-age: a new preload shows within it, or at once with 0', async () => {
    const before = (await (await view()).json()) as { preload: unknown[] };
    const staged = await registerPreloaded(chain, kek, { realm: 'eu-1', version: 'staged-1' });
    // No notification announces a preload: it shows when the kept view expires (2 s), not before.
    const started = performance.now();
    const seen = await eventually(
      async () =>
        ((await (await view()).json()) as { preload: Array<{ id: string }> }).preload.some(
          (p) => p.id === staged.id,
        ),
      true,
      5000,
    );
    expect(seen).toBe(true);
    expect(performance.now() - started).toBeLessThan(4000);
    expect(before.preload.length).toBeLessThan(
      ((await (await view()).json()) as { preload: unknown[] }).preload.length,
    );

    // With --view-max-age 0 every answer is read anew: a preload shows on the very next request.
    const uncached = await startApi(settings, { port: '0', logLevel: 'silent', viewMaxAge: '0' });
    try {
      const answer = await view({}, token, uncached.url);
      expect(answer.headers.get('cache-control')).toBe('private, no-cache');
      const next = await registerPreloaded(chain, kek, { realm: 'eu-1', version: 'staged-2' });
      const after = (await (await view({}, token, uncached.url)).json()) as {
        preload: Array<{ id: string }>;
      };
      expect(after.preload.map((p) => p.id)).toContain(next.id);
    } finally {
      await uncached.close();
    }
  });

  it('answers a poll storm from one kept read: queries counted by the server stay flat', async () => {
    const queries = async () =>
      Number(
        /^splinter_api_database_queries_total (\d+)/m.exec(
          await (await fetch(`${api.url}/metrics`)).text(),
        )?.[1],
      );
    await view();
    const before = await queries();
    const statuses = await Promise.all(Array.from({ length: 200 }, async () => (await view()).status));
    expect(new Set(statuses)).toEqual(new Set([200]));
    const spent = (await queries()) - before;
    // One read of the view is a handful of statements; 200 uncached answers would be hundreds.
    expect(spent).toBeLessThan(20);
  });

  it('lets a shared cache keep the view only when told to (--view-cache public)', async () => {
    const shared = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      viewCache: 'public',
      viewMaxAge: '5',
    });
    try {
      const answer = await view({}, token, shared.url);
      expect(answer.headers.get('cache-control')).toBe('public, max-age=5');
      expect(answer.headers.get('vary')).toBe('authorization');
    } finally {
      await shared.close();
    }
    const refused = await startApi(settings, { port: '0', viewCache: 'everyone', viewMaxAge: '-1' }).then(
      () => undefined,
      (e: unknown) => e as Error & { code: string; details: { problems: string[] } },
    );
    expect(refused?.code).toBe('INVALID_CONFIG');
    expect(refused?.details.problems).toEqual([
      '--view-max-age must be a whole number',
      '--view-cache must be private or public',
    ]);
  });

  it('the launcher client revalidates with If-None-Match and reuses its last view on 304', async () => {
    const first = await fetchRealmView({ api: api.url, token, realm: 'eu-1' });
    expect(first.notModified).toBe(false);
    expect(first.etag).toMatch(/^"/);
    const again = await fetchRealmView({
      api: api.url,
      token,
      realm: 'eu-1',
      last: { etag: first.etag!, view: first.view },
    });
    expect(again.notModified).toBe(true);
    expect(again.view).toBe(first.view);
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    expect(metrics).toMatch(
      /splinter_api_requests_total\{route="\/launcher\/realms\/:realm",method="GET",status="304"\} \d+/,
    );

    const stale = await fetchRealmView({
      api: api.url,
      token,
      realm: 'eu-1',
      last: { etag: '"gone"', view: first.view },
    });
    expect(stale.notModified).toBe(false);
    expect(stale.etag).toBe(first.etag);
    expect(stale.view).not.toBe(first.view);
    expect(stale.view).toEqual(first.view);
  });

  it('the launcher client waits out a 429 as Retry-After says, with jitter, and within its bound', async () => {
    const limited = await startApi(settings, { port: '0', logLevel: 'silent', rateLimit: '1', burst: '1' });
    try {
      const own = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
      const ask = (backoff: Parameters<typeof requestRealmView>[0]['backoff']) =>
        requestRealmView({ api: limited.url, token: own, realm: 'eu-1', backoff });
      await ask({ retries: 0 });

      // Every wait is at least Retry-After (1 s) and at most half again; after the retries, RATE_LIMITED.
      const waits: number[] = [];
      const jitter = [0, 0.5, 0.999];
      const refused = await ask({
        retries: 3,
        random: () => jitter[waits.length] ?? 0,
        wait: async (ms) => {
          waits.push(ms);
        },
      }).then(
        () => undefined,
        (e: unknown) => e as Error & { code: string; details: { retryAfter: number; status: number } },
      );
      expect(waits).toEqual([1000, 1250, 1500]);
      expect(refused?.code).toBe('RATE_LIMITED');
      expect(refused?.details).toMatchObject({ status: 429, retryAfter: 1 });

      // A server that asks for more than the bound is not waited for at all.
      const unwaited: number[] = [];
      const bounded = await ask({ maxWaitMs: 500, wait: async (ms) => void unwaited.push(ms) }).then(
        () => undefined,
        (e: unknown) => e as { code: string },
      );
      expect(bounded?.code).toBe('RATE_LIMITED');
      expect(unwaited).toEqual([]);

      // For real: the default wait lets the bucket refill, and the retry is answered.
      const started = performance.now();
      const answered = await ask({});
      expect(answered.realm).toBe('eu-1');
      expect(performance.now() - started).toBeGreaterThanOrEqual(900);
      const metrics = await (await fetch(`${limited.url}/metrics`)).text();
      expect(metrics).toMatch(/route="\/launcher\/realms\/:realm",method="GET",status="429"\} [1-9]/);
    } finally {
      await limited.close();
    }
  });
});

import { type RunningApi, startApi } from '@splintertree/api';
import type { ChainStore, StatementSigner } from '@splintertree/chain';
import type { Settings } from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, eventually, openBackend, registerPreloaded } from './helpers.js';

/** Stands in for a release key: the API serves envelopes as stored and never verifies them. */
const sign: StatementSigner = async (facts) => ({
  envelope: JSON.stringify({
    payloadType: 'application/vnd.in-toto+json',
    payload: Buffer.from(JSON.stringify(facts)).toString('base64'),
    signatures: [],
  }),
  keyId: 'test-key',
  issuedAt: new Date().toISOString(),
  expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
});

describe('GET /launcher/realms/:realm/release: ETag, 304 and one read per signed statement', () => {
  let backend: Backend;
  let settings: Settings;
  let chain: ChainStore;
  let api: RunningApi;
  let token: string;
  const kek = generatePatchKey();

  const release = (headers: Record<string, string> = {}) =>
    fetch(`${api.url}/launcher/realms/eu-1/release`, {
      headers: { authorization: `Bearer ${token}`, ...headers },
    });
  const queries = async () =>
    Number(
      /^splinter_api_database_queries_total (\d+)/m.exec(
        await (await fetch(`${api.url}/metrics`)).text(),
      )?.[1],
    );

  beforeAll(async () => {
    backend = await openBackend('api_release', kek);
    ({ settings, token, chain } = backend);
    api = await startApi(settings, { port: '0', logLevel: 'silent', rateLimit: '1000', burst: '1000' });
    const patch = await registerPreloaded(chain, kek, { realm: 'eu-1', version: '1' });
    await chain.activate({ patchId: patch.id, actor: 'test', statement: sign });
  });
  afterAll(async () => {
    await api?.close();
    await backend?.close();
  });

  it('answers 304 without a body to a matching If-None-Match, 200 with the statement otherwise', async () => {
    const answer = await release();
    expect(answer.status).toBe(200);
    const etag = answer.headers.get('etag');
    expect(etag).toMatch(/^"release-\d+"$/);
    const body = await answer.text();

    for (const ifNoneMatch of [etag!, `W/${etag}`, `"other", ${etag}`, '*']) {
      const revalidated = await release({ 'if-none-match': ifNoneMatch });
      expect(revalidated.status, ifNoneMatch).toBe(304);
      expect(revalidated.headers.get('etag')).toBe(etag);
      expect(await revalidated.text()).toBe('');
    }
    const other = await release({ 'if-none-match': '"release-0"' });
    expect(other.status).toBe(200);
    expect(await other.text()).toBe(body);

    // A 304 is still an authenticated answer: no token, no tag.
    const anonymous = await fetch(`${api.url}/launcher/realms/eu-1/release`, {
      headers: { 'if-none-match': etag! },
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('etag')).toBeNull();

    // A refresh stores a newer statement: the old tag no longer matches once it is announced.
    await chain.refreshStatement({ realm: 'eu-1', statement: sign });
    expect(await eventually(async () => (await release({ 'if-none-match': etag! })).status, 200)).toBe(200);
    expect((await release()).headers.get('etag')).not.toBe(etag);
  });

  it('answers a poll storm from one kept read, and reads again once a new statement is announced', async () => {
    const before = (await release()).headers.get('etag');
    const spent = await queries();
    const statuses = await Promise.all(Array.from({ length: 200 }, async () => (await release()).status));
    expect(new Set(statuses)).toEqual(new Set([200]));
    // One read of the statement is one query; 200 uncached answers would be 200.
    expect((await queries()) - spent).toBeLessThan(10);

    const refreshed = await chain.refreshStatement({ realm: 'eu-1', statement: sign });
    const tag = `"release-${refreshed.sequence}"`;
    expect(tag).not.toBe(before);
    expect(await eventually(async () => (await release()).headers.get('etag'), tag)).toBe(tag);
  });
});

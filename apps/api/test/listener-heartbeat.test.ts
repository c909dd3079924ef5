import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type ListenerState, type RunningApi, startApi } from '@splintertree/api';
import { AccessStore, ChainStore, openPostgres, type SqlClient } from '@splintertree/chain';
import {
  createLauncherToken,
  openSplinter,
  type Splinter,
  settingsFromEnvironment,
} from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { type FreshDatabase, freshDatabase, startTcpProxy, type TcpProxy } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, registerPreloaded } from './helpers.js';

describe('launcher API whose LISTEN connection dies silently (real PostgreSQL behind a TCP proxy)', () => {
  let database: FreshDatabase;
  let proxy: TcpProxy;
  let splinter: Splinter;
  let client: SqlClient;
  let chain: ChainStore;
  let api: RunningApi;
  const kek = generatePatchKey();

  const unlock = (id: string, token: string) =>
    fetch(`${api.url}/launcher/patches/${id}/unlock`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
  const readiness = async () => {
    const response = await fetch(`${api.url}/readyz`);
    return { status: response.status, body: await response.json() };
  };
  const nextListenerState = async () => ((await once(api.launcher, 'listener')) as [ListenerState])[0];

  beforeAll(async () => {
    database = await freshDatabase('heartbeat', { migrate: true });
    const direct = new URL(database.url);
    proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
    const proxied = new URL(database.url);
    proxied.host = `${proxy.host}:${proxy.port}`;
    const environment = {
      SPLINTER_KEK: Buffer.from(kek).toString('hex'),
      SPLINTER_HOME: `/tmp/splinter-heartbeat-test-${randomBytes(4).toString('hex')}`,
    };
    splinter = await openSplinter({
      settings: settingsFromEnvironment({ ...environment, DATABASE_URL: database.url }),
    });
    client = await openPostgres(database.url);
    chain = new ChainStore(client);
    api = await startApi(settingsFromEnvironment({ ...environment, DATABASE_URL: proxied.toString() }), {
      port: '0',
      logLevel: 'silent',
      listenHeartbeat: '200',
    });
  });
  afterAll(async () => {
    // The proxy first: it holds the silenced sockets open, as the NAT would.
    await proxy?.stop();
    await api?.close();
    await splinter?.close();
    await client?.close();
    await database?.drop();
  });

  it('declares a silent listener lost by heartbeat: not ready, caches bypassed, ready again once it listens anew', async () => {
    const base = await registerPreloaded(chain, kek, { realm: 'eu-1', version: 'base' });
    await chain.activate({ patchId: base.id, actor: 'test' });
    const patch = await registerPreloaded(chain, kek, { realm: 'eu-1', version: 'next', parent: base.id });
    await chain.activate({ patchId: patch.id, actor: 'test' });
    const doomed = await createLauncherToken(splinter, { realm: 'eu-1', label: 'doomed' });
    const player = await createLauncherToken(splinter, { realm: 'eu-1', label: 'player' });
    for (const token of [doomed.token, player.token, doomed.token, player.token]) {
      expect((await unlock(patch.id, token)).status).toBe(200); // cached from the first of each
    }
    expect(await readiness()).toEqual({
      status: 200,
      body: { ready: true, database: true, listening: true },
    });

    const lost = nextListenerState();
    proxy.silence('LISTEN');
    expect(proxy.silenced()).toBe(1);
    const state = await lost;
    expect(state.listening).toBe(false);
    expect(state.listening === false && state.error.message).toContain('heartbeat not heard back');

    expect(await readiness()).toEqual({
      status: 503,
      body: { ready: false, database: true, listening: false },
    });
    // Nobody hears these revocations: only reading the database gets them right.
    await new AccessStore(client).revokeToken(doomed.id);
    expect((await unlock(patch.id, doomed.token)).status).toBe(401);
    await chain.rollback({ realm: 'eu-1', actor: 'test' });
    expect((await unlock(patch.id, player.token)).status).toBe(423);
    expect((await readiness()).status).toBe(503);

    const back = nextListenerState();
    proxy.restore();
    expect(await back).toEqual({ listening: true });
    expect(await readiness()).toEqual({
      status: 200,
      body: { ready: true, database: true, listening: true },
    });
    // Listening again, it hears changes again.
    await chain.activate({ patchId: patch.id, actor: 'test' });
    expect((await unlock(patch.id, player.token)).status).toBe(200);
    await chain.rollback({ realm: 'eu-1', actor: 'test' });
    expect(await eventually(async () => (await unlock(patch.id, player.token)).status, 423)).toBe(423);
  });

  it('answers /readyz 503 within one heartbeat interval when the database stops answering', async () => {
    const direct = new URL(database.url);
    const hung = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
    const proxied = new URL(database.url);
    proxied.host = `${hung.host}:${hung.port}`;
    const settings = settingsFromEnvironment({
      DATABASE_URL: proxied.toString(),
      SPLINTER_KEK: Buffer.from(kek).toString('hex'),
      SPLINTER_HOME: `/tmp/splinter-heartbeat-test-${randomBytes(4).toString('hex')}`,
    });
    const running = await startApi(settings, { port: '0', logLevel: 'silent', listenHeartbeat: '300' });
    try {
      expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
      hung.silence(''); // every connection, and every new one from its first byte
      const started = performance.now();
      const response = await fetch(`${running.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
      const elapsed = performance.now() - started;
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ ready: false, database: false });
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2000);
    } finally {
      await hung.stop();
      await running.close();
    }
  });
});

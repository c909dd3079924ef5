import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PlayerTokens, type RunningApi, startApi } from '@splintertree/api';
import { ChainStore, openPostgres, type SqlClient } from '@splintertree/chain';
import {
  createLauncherToken,
  openSplinter,
  type Settings,
  type Splinter,
  settingsFromEnvironment,
} from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import { exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, registerPreloaded } from './helpers.js';

const ISSUER = 'https://id.studio.test/';
const AUDIENCE = 'splinter-launcher';

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

describe("players' JWTs from the studio's identity provider (real JWKS over HTTP, real PostgreSQL)", () => {
  let database: FreshDatabase;
  let settings: Settings;
  let splinter: Splinter;
  let client: SqlClient;
  let chain: ChainStore;
  let api: RunningApi;
  let signing: KeyPair;
  let stranger: KeyPair;
  let jwks: http.Server;
  let jwksBase: string;
  let jwksRequests = 0;
  let realmToken: string;
  const hung: http.ServerResponse[] = [];
  const kek = generatePatchKey();
  const home = `/tmp/splinter-api-jwt-${randomBytes(4).toString('hex')}`;

  const sign = (claims: JWTPayload = {}, options: { key?: KeyPair; kid?: string; alg?: string } = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ realm: 'eu-1', ...claims })
      .setProtectedHeader({ alg: options.alg ?? 'ES256', kid: options.kid ?? 'studio-1' })
      .setIssuer(typeof claims.iss === 'string' ? claims.iss : ISSUER)
      .setAudience((claims.aud as string | undefined) ?? AUDIENCE)
      .setSubject(claims.sub ?? `player-${randomBytes(4).toString('hex')}`)
      .setIssuedAt(now)
      .setExpirationTime(typeof claims.exp === 'number' ? claims.exp : now + 600)
      .sign((options.key ?? signing).privateKey);
  };

  const ask = async (bearer: string, url = api.url, realm = 'eu-1') => {
    const response = await fetch(`${url}/launcher/realms/${realm}`, {
      headers: { authorization: `Bearer ${bearer}` },
    });
    const body = (await response.json()) as { code?: string; realm?: string; detail?: string };
    return { status: response.status, code: body.code, body, headers: response.headers };
  };

  beforeAll(async () => {
    signing = await generateKeyPair('ES256', { extractable: true });
    stranger = await generateKeyPair('ES256', { extractable: true });
    const published = {
      keys: [{ ...(await exportJWK(signing.publicKey)), kid: 'studio-1', alg: 'ES256', use: 'sig' }],
    };
    jwks = http.createServer((request, response) => {
      jwksRequests += 1;
      if (request.url === '/jwks.json') {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(published));
      } else if (request.url === '/huge.json') {
        // Over the size limit, streamed without a Content-Length.
        response.writeHead(200, { 'content-type': 'application/json' });
        response.write(`{"keys":[${'{"kty":"oct","k":"AAAA"},'.repeat(20_000)}`);
        response.end('{"kty":"oct","k":"AAAA"}]}');
      } else if (request.url === '/hang.json') {
        hung.push(response);
      } else {
        response.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    jwksBase = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}`;

    database = await freshDatabase('api_jwt', { migrate: true });
    settings = settingsFromEnvironment({
      DATABASE_URL: database.url,
      SPLINTER_KEK: Buffer.from(kek).toString('hex'),
      SPLINTER_HOME: home,
    });
    splinter = await openSplinter({ settings });
    realmToken = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
    client = await openPostgres(database.url);
    chain = new ChainStore(client);
    const patch = await registerPreloaded(chain, kek, { realm: 'eu-1', version: '1' });
    await chain.activate({ patchId: patch.id, actor: 'test' });
    await registerPreloaded(chain, kek, { realm: 'us-1', version: '1' });
    api = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      jwtJwksUrl: `${jwksBase}/jwks.json`,
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
      jwtClockTolerance: '30',
    });
  });
  afterAll(async () => {
    await api?.close();
    for (const response of hung) response.destroy();
    jwks?.closeAllConnections();
    await new Promise((resolve) => jwks?.close(resolve));
    await splinter?.close();
    await client?.close();
    await database?.drop();
  });

  it('accepts a valid player token for its realm, and realm tokens still', async () => {
    const answer = await ask(await sign());
    expect(answer.status).toBe(200);
    expect(answer.body.realm).toBe('eu-1');
    expect((await ask(realmToken)).status).toBe(200);
    // Within the clock tolerance (30 s) an expired token still passes.
    expect((await ask(await sign({ exp: Math.floor(Date.now() / 1000) - 5 }))).status).toBe(200);
  });

  it('refuses each bad token with its own code', async () => {
    const now = Math.floor(Date.now() / 1000);
    const header = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const claims = header({ iss: ISSUER, aud: AUDIENCE, sub: 'p', realm: 'eu-1', exp: now + 600 });
    const hmacKey = new TextEncoder().encode('a shared secret a studio would never use for players');
    const hs256 = await new SignJWT({ realm: 'eu-1' })
      .setProtectedHeader({ alg: 'HS256', kid: 'studio-1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject('p')
      .setExpirationTime(now + 600)
      .sign(hmacKey);
    const valid = await sign();
    const [h, p, sig] = valid.split('.');
    const tampered = `${h}.${header({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), realm: 'us-1' })}.${sig}`;
    const cases: Array<[string, string, number, string]> = [
      ['wrong issuer', await sign({ iss: 'https://evil.test/' }), 401, 'TOKEN_ISSUER_INVALID'],
      ['wrong audience', await sign({ aud: 'another-app' }), 401, 'TOKEN_AUDIENCE_INVALID'],
      ['another realm', await sign({ realm: 'us-1' }), 403, 'TOKEN_REALM_MISMATCH'],
      ['expired', await sign({ exp: now - 120 }), 401, 'TOKEN_EXPIRED'],
      ['unknown kid', await sign({}, { key: stranger, kid: 'rogue' }), 401, 'TOKEN_KEY_UNKNOWN'],
      ['alg none', `${header({ alg: 'none' })}.${claims}.`, 401, 'TOKEN_ALGORITHM_REFUSED'],
      ['HS256', hs256, 401, 'TOKEN_ALGORITHM_REFUSED'],
      ['tampered claims', tampered, 401, 'TOKEN_INVALID'],
      ['no realm claim', await sign({ realm: undefined }), 401, 'TOKEN_INVALID'],
    ];
    for (const [what, token, status, code] of cases) {
      const answer = await ask(token);
      expect({ what, status: answer.status, code: answer.code }).toEqual({ what, status, code });
      if (status === 401) expect(answer.headers.get('www-authenticate')).toBe('Bearer');
    }
    // The realm asked must be the token's: us-1 exists, the token is for eu-1.
    const otherRealm = await ask(valid, api.url, 'us-1');
    expect([otherRealm.status, otherRealm.code]).toEqual([403, 'TOKEN_REALM_MISMATCH']);
    // Every realm-scoped route answers so, the release statement's too.
    const release = await fetch(`${api.url}/launcher/realms/us-1/release`, {
      headers: { authorization: `Bearer ${valid}` },
    });
    expect([release.status, ((await release.json()) as { code: string }).code]).toEqual([
      403,
      'TOKEN_REALM_MISMATCH',
    ]);
  });

  it('unlocks only patches of the realm the player token names', async () => {
    const us = await registerPreloaded(chain, kek, { realm: 'us-1', version: 'other' });
    await chain.activate({ patchId: us.id, actor: 'test', force: true });
    const eu = await registerPreloaded(chain, kek, { realm: 'eu-1', version: 'mine' });
    await chain.activate({ patchId: eu.id, actor: 'test', force: true });
    const token = await sign();
    const unlock = (id: string) =>
      fetch(`${api.url}/launcher/patches/${id}/unlock`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
    const mine = await unlock(eu.id);
    expect(mine.status).toBe(200);
    expect(((await mine.json()) as { key: string }).key).toBe(eu.key);
    const theirs = await unlock(us.id);
    expect(theirs.status).toBe(403);
    expect(((await theirs.json()) as { code: string }).code).toBe('TOKEN_REALM_MISMATCH');
  });

  it('reads the key from a PEM file instead of a JWKS', async () => {
    const pem = `${home}-studio.pem`;
    await writeFile(pem, await exportSPKI(signing.publicKey));
    const running = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      jwtPublicKey: pem,
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
      jwtRealmClaim: 'https://studio.test/realm',
    });
    try {
      const token = await sign({ 'https://studio.test/realm': 'eu-1', realm: 'us-1' });
      expect((await ask(token, running.url)).status).toBe(200);
      expect((await ask(await sign({}, { key: stranger }), running.url)).code).toBe('TOKEN_INVALID');
      expect((await ask(await sign({ 'https://studio.test/realm': 'us-1' }), running.url)).code).toBe(
        'TOKEN_REALM_MISMATCH',
      );
    } finally {
      await running.close();
    }
  });

  it('fetches the JWKS with a size limit and a timeout: JWKS_UNAVAILABLE, never a hang', async () => {
    for (const [path, detail] of [
      ['/huge.json', /over 262144 bytes/],
      ['/hang.json', /in time/],
      ['/missing.json', /unusable/],
    ] as const) {
      const running = await startApi(settings, {
        port: '0',
        logLevel: 'silent',
        jwtJwksUrl: `${jwksBase}${path}`,
        jwtIssuer: ISSUER,
        jwtAudience: AUDIENCE,
        jwksTimeout: '300',
      });
      try {
        const started = performance.now();
        const answer = await ask(await sign(), running.url);
        expect([path, answer.status, answer.code]).toEqual([path, 503, 'JWKS_UNAVAILABLE']);
        expect(answer.body.detail).toMatch(detail);
        expect(performance.now() - started).toBeLessThan(3000);
      } finally {
        await running.close();
      }
    }
  });

  it('refetches the JWKS for an unknown key id at most once per cooldown', async () => {
    const running = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      failureBurst: '1000',
      jwtJwksUrl: `${jwksBase}/jwks.json`,
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
    });
    try {
      expect((await ask(await sign(), running.url)).status).toBe(200);
      const before = jwksRequests;
      for (let i = 0; i < 20; i++) {
        const answer = await ask(await sign({}, { key: stranger, kid: `rogue-${i}` }), running.url);
        expect(answer.code).toBe('TOKEN_KEY_UNKNOWN');
      }
      expect(jwksRequests - before).toBeLessThanOrEqual(1);
    } finally {
      await running.close();
    }
  });

  it('charges requests and failures to the player (iss and sub) first, then the client address', async () => {
    const running = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      rateLimit: '1',
      burst: '2',
      failureRate: '1',
      failureBurst: '3',
      trustProxy: 'loopback',
      jwtJwksUrl: `${jwksBase}/jwks.json`,
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
    });
    const from = async (bearer: string, address: string) => {
      const response = await fetch(`${running.url}/launcher/realms/eu-1`, {
        headers: { authorization: `Bearer ${bearer}`, 'x-forwarded-for': address },
      });
      return { status: response.status, code: ((await response.json()) as { code?: string }).code };
    };
    try {
      // Two players behind one address have a bucket each: one spending its burst leaves the other alone.
      const alice = await sign({ sub: 'alice' });
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await from(alice, '203.0.113.1')).status);
      expect(statuses.slice(0, 2)).toEqual([200, 200]);
      expect(statuses.at(-1)).toBe(429);
      expect((await from(await sign({ sub: 'bob' }), '203.0.113.1')).status).toBe(200);
      // A fresh token of alice's is still alice: the bucket is the player's, not the token's.
      expect((await from(await sign({ sub: 'alice' }), '198.51.100.1')).status).toBe(429);

      // Bad tokens naming carol, from ever-new addresses, are limited as carol's...
      const forged = await sign({ sub: 'carol' }, { key: stranger });
      const failures = [];
      for (let i = 0; i < 5; i++) failures.push((await from(forged, `192.0.2.${i + 1}`)).code);
      expect(failures.slice(0, 3)).toEqual(['TOKEN_INVALID', 'TOKEN_INVALID', 'TOKEN_INVALID']);
      expect(failures.at(-1)).toBe('RATE_LIMITED');
      // ...while carol's own valid token is served, and another player's failure is its own.
      expect((await from(await sign({ sub: 'carol' }), '192.0.2.9')).status).toBe(200);
      expect((await from(await sign({ sub: 'dave' }, { key: stranger }), '192.0.2.10')).code).toBe(
        'TOKEN_INVALID',
      );
    } finally {
      await running.close();
    }
  });

  it('keeps a verified token until its exp, then refuses it like any expired one', async () => {
    const running = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      jwtJwksUrl: `${jwksBase}/jwks.json`,
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
      jwtClockTolerance: '0',
    });
    try {
      const token = await sign({ exp: Math.floor(Date.now() / 1000) + 2 });
      const statuses = await Promise.all(
        Array.from({ length: 20 }, async () => (await ask(token, running.url)).status),
      );
      expect(new Set(statuses)).toEqual(new Set([200]));
      const tokens = await PlayerTokens.open({
        jwksUrl: `${jwksBase}/jwks.json`,
        issuer: ISSUER,
        audience: AUDIENCE,
        realmClaim: 'realm',
        clockTolerance: 0,
        algorithms: ['ES256'],
        jwksTimeout: 1000,
      });
      for (let i = 0; i < 10; i++) expect((await tokens.verify(token)).realm).toBe('eu-1');
      expect(tokens.signaturesChecked()).toBe(1);
      const refused = await eventually(
        async () => (await ask(token, running.url)).code,
        'TOKEN_EXPIRED',
        5000,
      );
      expect(refused).toBe('TOKEN_EXPIRED');
    } finally {
      await running.close();
    }
  });

  it('reports JWT configuration problems at start-up', async () => {
    const problems = async (flags: Parameters<typeof startApi>[1]) =>
      startApi(settings, { port: '0', logLevel: 'silent', ...flags }).then(
        async (running) => {
          await running.close();
          return [];
        },
        (e: unknown) => (e as { details: { problems: string[] } }).details.problems,
      );
    expect(await problems({ jwtJwksUrl: 'ftp://id.test/keys' })).toEqual([
      '--jwt-jwks-url must be an http(s) URL',
    ]);
    expect(await problems({ jwtJwksUrl: `${jwksBase}/jwks.json` })).toEqual([
      "player JWTs need --jwt-issuer (the identity provider's iss)",
      'player JWTs need --jwt-audience (the aud they are issued for)',
    ]);
    expect(await problems({ jwtIssuer: ISSUER })).toEqual([
      '--jwt-issuer and --jwt-audience need --jwt-jwks-url or --jwt-public-key',
    ]);
    expect(
      await problems({
        jwtJwksUrl: `${jwksBase}/jwks.json`,
        jwtPublicKey: '/nowhere.pem',
        jwtIssuer: ISSUER,
        jwtAudience: AUDIENCE,
        jwtAlgorithms: 'HS256',
      }),
    ).toEqual([expect.stringContaining('--jwt-algorithms must be a comma-separated list of RS256')]);
    const unreadable = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      jwtPublicKey: '/nowhere.pem',
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
    }).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(unreadable?.code).toBe('INVALID_CONFIG');
    expect(unreadable?.message).toContain('--jwt-public-key /nowhere.pem');
  });
});

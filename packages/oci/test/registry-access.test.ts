import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  type CredentialSource,
  descriptorFor,
  dockerConfigCredentials,
  RegistryTarget,
  type RegistryTargetOptions,
  readAllLimited,
  USER_AGENT,
} from '@splintertree/oci';
import {
  type ConnectProxy,
  errorCodeOf,
  type RunningRegistry,
  startConnectProxy,
  startFaultProxy,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const FAST_RETRY = { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 50, maxElapsedMs: 2_000 };
const PROXIED_NAME = 'registry.splinter.test';

/** Pushes a fresh blob and reads it back: a push and a pull scope, each authenticated. */
async function roundTrip(options: RegistryTargetOptions): Promise<void> {
  const target = new RegistryTarget({ retry: FAST_RETRY, ...options });
  try {
    const data = randomBytes(50_000);
    const desc = descriptorFor('application/octet-stream', data);
    await target.push(desc, data);
    expect(await target.exists(desc)).toBe(true);
    expect(Buffer.compare(await readAllLimited(await target.fetch(desc), 1 << 20), data)).toBe(0);
  } finally {
    await target.close();
  }
}

async function failure(options: RegistryTargetOptions): Promise<Error> {
  try {
    await roundTrip(options);
  } catch (error) {
    return error as Error;
  }
  throw new Error('the round trip succeeded');
}

function loginOf(registry: RunningRegistry): CredentialSource {
  return async () => ({ username: registry.username!, password: registry.password!, source: 'test login' });
}

describe('a TLS registry with its own CA and htpasswd', () => {
  let registry: RunningRegistry;
  let proxy: ConnectProxy;
  let port: string;
  beforeAll(async () => {
    registry = await startRegistry({ auth: 'htpasswd', tls: true, hostnames: [PROXIED_NAME] });
    port = registry.host.split(':')[1]!;
    proxy = await startConnectProxy({ hosts: { [PROXIED_NAME]: '127.0.0.1' } });
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  it('refuses an unknown CA, and says why for the app to say how to trust it', async () => {
    const error = await failure({
      registry: registry.host,
      repository: 'tls/none',
      dockerConfigDir: registry.dockerConfigDir,
    });
    expect(await errorCodeOf(Promise.reject(error))).toBe('REGISTRY_UNREACHABLE');
    expect(error.message).toMatch(/TLS: the registry's certificate is not trusted/);
    expect((error as { details?: unknown }).details).toMatchObject({ reason: 'tls-untrusted' });
  });

  it('pushes and pulls with --ca-file, and with --insecure', async () => {
    await roundTrip({
      registry: registry.host,
      repository: 'tls/ca',
      dockerConfigDir: registry.dockerConfigDir,
      transport: { caFile: registry.caFile },
    });
    await roundTrip({
      registry: registry.host,
      repository: 'tls/insecure',
      dockerConfigDir: registry.dockerConfigDir,
      transport: { insecure: true },
    });
  });

  it('names the credential source of a refused login, never the secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'splinter-authfile-'));
    const authFile = join(dir, 'auth.json');
    const wrong = 'wrong-pass-123';
    await writeFile(
      authFile,
      JSON.stringify({
        auths: { [registry.host]: { auth: Buffer.from(`splinter:${wrong}`).toString('base64') } },
      }),
    );
    const error = await failure({
      registry: registry.host,
      repository: 'tls/wrong',
      authFile: { authFile },
      transport: { caFile: registry.caFile },
    });
    expect(await errorCodeOf(Promise.reject(error))).toBe('REGISTRY_UNAUTHORIZED');
    expect(error.message).toContain(`auth file ${authFile}`);
    expect(error.message).not.toContain(wrong);
    const anonymous = await failure({
      registry: registry.host,
      repository: 'tls/anonymous',
      authFile: { authFile: join(dir, 'absent.json') },
      transport: { caFile: registry.caFile },
    });
    expect(anonymous.message).toContain(`anonymous (no auth file at ${join(dir, 'absent.json')})`);
    await rm(dir, { recursive: true, force: true });
  });

  it('goes through an HTTPS_PROXY by CONNECT, and NO_PROXY and loopback bypass it', async () => {
    const before = proxy.log.length;
    await roundTrip({
      registry: `${PROXIED_NAME}:${port}`,
      repository: 'tls/proxied',
      credentials: loginOf(registry),
      transport: { caFile: registry.caFile, proxy: { httpsProxy: proxy.url } },
    });
    const tunnels = proxy.log.slice(before);
    expect(tunnels.length).toBeGreaterThan(0);
    expect(tunnels.every((entry) => entry.target === `${PROXIED_NAME}:${port}` && entry.status === 200)).toBe(
      true,
    );

    // The name resolves only inside the proxy: bypassing it, the client cannot find the host.
    const bypassed = await failure({
      registry: `${PROXIED_NAME}:${port}`,
      repository: 'tls/bypassed',
      credentials: loginOf(registry),
      transport: {
        caFile: registry.caFile,
        proxy: { httpsProxy: proxy.url, noProxy: `example.com,${PROXIED_NAME}` },
      },
    });
    expect(bypassed.message).toMatch(/ENOTFOUND|getaddrinfo/);
    expect(proxy.log.length).toBe(before + tunnels.length);

    // Go's rule, which docker, oras and skopeo share: loopback never goes through a proxy.
    await roundTrip({
      registry: registry.host,
      repository: 'tls/loopback',
      dockerConfigDir: registry.dockerConfigDir,
      transport: { caFile: registry.caFile, proxy: { httpsProxy: proxy.url } },
    });
    expect(proxy.log.length).toBe(before + tunnels.length);
  });
});

describe('identity tokens with a TLS token service', () => {
  let registry: RunningRegistry;
  let dir: string;
  let path: string | undefined;
  beforeAll(async () => {
    registry = await startRegistry({ auth: 'token', tls: true });
    dir = await mkdtemp(join(tmpdir(), 'splinter-identity-'));
    path = process.env.PATH;
  });
  afterAll(async () => {
    process.env.PATH = path;
    await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('sends auths.identitytoken as an OAuth2 refresh token (POST grant_type=refresh_token)', async () => {
    const service = registry.tokenService!;
    const token = service.issueRefreshToken('splinter');
    const configDir = join(dir, 'file');
    await mkdir(configDir);
    await writeFile(
      join(configDir, 'config.json'),
      JSON.stringify({ auths: { [registry.host]: { identitytoken: token } } }),
    );
    const grants = service.grants.length;
    await roundTrip({
      registry: registry.host,
      repository: 'identity/file',
      dockerConfigDir: configDir,
      transport: { caFile: registry.caFile },
    });
    const used = service.grants.slice(grants);
    expect(used.length).toBeGreaterThan(0);
    expect(new Set(used)).toEqual(new Set(['refresh_token']));
    expect(new Set(service.userAgents)).toEqual(new Set([USER_AGENT]));
    expect(USER_AGENT).toMatch(/^splinter\/\d+\.\d+\.\d+/);
  });

  it('takes a helper answering Username <token> as an identity token', async () => {
    const service = registry.tokenService!;
    const token = service.issueRefreshToken('splinter');
    const bin = join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-splintertest');
    await writeFile(
      helper,
      `#!/bin/sh\nread server\n[ "$1" = get ] && printf '{"ServerURL":"%s","Username":"<token>","Secret":"${token}"}' "$server"\n`,
    );
    await chmod(helper, 0o755);
    process.env.PATH = `${bin}${delimiter}${path}`;
    const configDir = join(dir, 'helper');
    await mkdir(configDir);
    await writeFile(
      join(configDir, 'config.json'),
      JSON.stringify({ credHelpers: { [registry.host]: 'splintertest' } }),
    );
    const grants = service.grants.length;
    await roundTrip({
      registry: registry.host,
      repository: 'identity/helper',
      credentials: dockerConfigCredentials(configDir),
      transport: { caFile: registry.caFile },
    });
    expect(new Set(service.grants.slice(grants))).toEqual(new Set(['refresh_token']));
  });

  it('says an identity token was refused, without printing it', async () => {
    const configDir = join(dir, 'revoked');
    await mkdir(configDir);
    const token = 'refresh-not-issued-0000';
    await writeFile(
      join(configDir, 'config.json'),
      JSON.stringify({ auths: { [registry.host]: { identitytoken: token } } }),
    );
    const error = await failure({
      registry: registry.host,
      repository: 'identity/revoked',
      dockerConfigDir: configDir,
      transport: { caFile: registry.caFile },
    });
    expect(await errorCodeOf(Promise.reject(error))).toBe('REGISTRY_UNAUTHORIZED');
    expect(error.message).toContain(`identity token in ${join(configDir, 'config.json')}`);
    expect(error.message).not.toContain(token);
  });
});

describe('a plain-HTTP registry behind HTTP_PROXY', () => {
  it('tunnels http through HTTP_PROXY, and HTTPS_PROXY alone does not apply to http (Go)', async () => {
    const registry = await startRegistry({ auth: 'htpasswd' });
    const proxy = await startConnectProxy({ hosts: { [PROXIED_NAME]: '127.0.0.1' } });
    const host = `${PROXIED_NAME}:${registry.host.split(':')[1]}`;
    try {
      await roundTrip({
        registry: host,
        repository: 'plain/proxied',
        plainHttp: true,
        credentials: loginOf(registry),
        transport: { proxy: { httpProxy: proxy.url } },
      });
      expect(proxy.log.length).toBeGreaterThan(0);
      expect(proxy.log.every((entry) => entry.target === host)).toBe(true);
      const seen = proxy.log.length;
      const direct = await failure({
        registry: host,
        repository: 'plain/direct',
        plainHttp: true,
        credentials: loginOf(registry),
        transport: { proxy: { httpsProxy: proxy.url } },
      });
      expect(direct.message).toMatch(/ENOTFOUND|getaddrinfo/);
      expect(proxy.log.length).toBe(seen);
    } finally {
      await proxy.stop();
      await registry.stop();
    }
  });
});

describe('User-Agent', () => {
  it('is splinter/<version> on every registry request', async () => {
    const registry = await startRegistry({ auth: 'htpasswd' });
    const proxy = await startFaultProxy(registry.host);
    try {
      await roundTrip({
        registry: proxy.host,
        repository: 'agent/every',
        plainHttp: true,
        credentials: loginOf(registry),
      });
      expect(proxy.log.length).toBeGreaterThan(3);
      expect(new Set(proxy.log.map((entry) => entry.userAgent))).toEqual(new Set([USER_AGENT]));
    } finally {
      await proxy.stop();
      await registry.stop();
    }
  });
});

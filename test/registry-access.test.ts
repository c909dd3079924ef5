import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import {
  type ConnectProxy,
  type RunningRegistry,
  startConnectProxy,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, type CliResult, captureOutput, SAMPLE, scrubbedEnv, snapshot, tempDir } from './support.js';

const PROXIED_NAME = 'registry.splinter.test';

/** Runs the built CLI with `input` on standard input (for --password-stdin). */
function splinter(args: string[], env: Record<string, string>, input = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: scrubbedEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const output = captureOutput(child);
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code: code ?? -1, stdout: output.stdout(), stderr: output.stderr() }),
    );
    child.stdin.end(input);
  });
}

describe('login, push, pull, logout against TLS Distribution with its own CA and htpasswd', () => {
  let work: string;
  let registry: RunningRegistry;
  let proxy: ConnectProxy;
  let env: Record<string, string>;
  let configFile: string;
  let proxiedHost: string;
  beforeAll(async () => {
    work = await tempDir('access');
    registry = await startRegistry({ auth: 'htpasswd', tls: true, hostnames: [PROXIED_NAME] });
    proxy = await startConnectProxy({ hosts: { [PROXIED_NAME]: '127.0.0.1' } });
    proxiedHost = `${PROXIED_NAME}:${registry.host.split(':')[1]}`;
    await mkdir(join(work, 'docker'));
    configFile = join(work, 'docker', 'config.json');
    // A config another tool wrote: its other keys must survive login and logout.
    await writeFile(configFile, JSON.stringify({ auths: {}, detachKeys: 'ctrl-e,e' }));
    env = {
      SPLINTER_HOME: join(work, 'home'),
      DOCKER_CONFIG: join(work, 'docker'),
      HTTPS_PROXY: '',
      HTTP_PROXY: '',
      NO_PROXY: '',
      https_proxy: '',
      http_proxy: '',
      no_proxy: '',
    };
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('refuses a wrong password without saving it or printing it', async () => {
    const wrong = 'not-the-password-42';
    const result = await splinter(
      ['login', registry.host, '-u', 'splinter', '--password-stdin', '--ca-file', registry.caFile!],
      env,
      `${wrong}\n`,
    );
    expect(result.code).toBe(6);
    expect(result.stderr).toMatch(/REGISTRY_UNAUTHORIZED: .*refused the login/);
    expect(result.stderr + result.stdout).not.toContain(wrong);
    expect(JSON.parse(await readFile(configFile, 'utf8')).auths).toEqual({});
  });

  it('never waits for a password it cannot prompt for, and refuses two secrets at once', async () => {
    const noTerminal = await splinter(['login', registry.host, '-u', 'splinter'], env);
    expect(noTerminal.code).toBe(2);
    expect(noTerminal.stderr).toContain(
      'no terminal to ask for the login: give --username and --password-stdin',
    );
    const both = await splinter(
      ['login', registry.host, '-u', 'splinter', '-p', 'x', '--password-stdin'],
      env,
      'y',
    );
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--password and --password-stdin are mutually exclusive');
    const mixed = await splinter(
      [
        'login',
        registry.host,
        '--ca-file',
        registry.caFile!,
        '--authfile',
        'a.json',
        '--registry-config',
        'b.json',
        '-u',
        'splinter',
        '--password-stdin',
      ],
      env,
      'y',
    );
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('--registry-config and --authfile name different files');
  });

  it('says how to trust the CA when it is not given', async () => {
    const result = await splinter(['login', registry.host, '-u', 'splinter', '--password-stdin'], env, 'x\n');
    expect(result.code).toBe(6);
    expect(result.stderr).toMatch(
      /REGISTRY_UNREACHABLE: .*certificate is not trusted\)\nsplinter: hint: give the registry's CA with --ca-file or SPLINTER_CA_FILE/,
    );
  });

  it('logs in with --password-stdin, pushes with SPLINTER_CA_FILE, pulls through a proxy, logs out', async () => {
    const login = await splinter(
      ['login', registry.host, '-u', 'splinter', '--password-stdin', '--ca-file', registry.caFile!],
      env,
      `${registry.password}\n`,
    );
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain('Login Succeeded');
    const config = JSON.parse(await readFile(configFile, 'utf8'));
    expect(config.detachKeys).toBe('ctrl-e,e');
    expect(Buffer.from(config.auths[registry.host].auth, 'base64').toString()).toBe(
      `splinter:${registry.password}`,
    );
    expect((await stat(configFile)).mode & 0o777).toBe(0o600);

    const withCa = { ...env, SPLINTER_CA_FILE: registry.caFile! };
    const pushed = await splinter(
      [
        'patch',
        'push',
        SAMPLE,
        '--realm',
        'eu-1',
        '--version',
        '1.0.0',
        '--registry',
        `${registry.host}/game`,
        '--json',
      ],
      withCa,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const { digest } = JSON.parse(pushed.stdout) as { digest: string };

    // Through the proxy, by a name only the proxy resolves; `-p` works but warns.
    const proxied = { ...withCa, HTTPS_PROXY: proxy.url };
    const viaProxy = await splinter(
      ['login', proxiedHost, '-u', 'splinter', '-p', registry.password!, '--json'],
      proxied,
    );
    expect(viaProxy.code, viaProxy.stderr).toBe(0);
    expect(viaProxy.stderr).toContain('use --password-stdin');
    const before = proxy.log.length;
    const pulled = await splinter(
      [
        'patch',
        'pull',
        `${proxiedHost}/game/eu-1:1.0.0`,
        '--output',
        join(work, 'out'),
        '--insecure-skip-verify',
        '--json',
      ],
      proxied,
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(JSON.parse(pulled.stdout)).toMatchObject({ digest, files: 7 });
    expect(await snapshot(join(work, 'out'))).toEqual(await snapshot(SAMPLE));
    expect(proxy.log.length).toBeGreaterThan(before);
    expect(proxy.log.slice(before).every((entry) => entry.target === proxiedHost)).toBe(true);

    // NO_PROXY sends the pull direct, where the name does not resolve: the proxy sees nothing.
    const seen = proxy.log.length;
    const bypassed = await splinter(['inspect', `${proxiedHost}/game/eu-1:1.0.0`], {
      ...proxied,
      NO_PROXY: PROXIED_NAME,
    });
    expect(bypassed.code).toBe(6);
    expect(bypassed.stderr).toMatch(/ENOTFOUND|getaddrinfo/);
    expect(proxy.log.length).toBe(seen);

    const logout = await splinter(['logout', registry.host], env);
    expect(logout.code, logout.stderr).toBe(0);
    expect(logout.stdout).toContain(`Removed login credentials for ${registry.host}`);
    const after = JSON.parse(await readFile(configFile, 'utf8'));
    expect(after.auths[registry.host]).toBeUndefined();
    expect(after.auths[proxiedHost]).toBeDefined();
    expect(after.detachKeys).toBe('ctrl-e,e');

    const anonymous = await splinter(['inspect', `${registry.host}/game/eu-1:1.0.0`], withCa);
    expect(anonymous.code).toBe(6);
    expect(anonymous.stderr).toContain(`anonymous (no credentials for ${registry.host} in ${configFile})`);
    const again = await splinter(['logout', registry.host], env);
    expect(again.stdout).toContain(`Not logged in to ${registry.host}`);
  });

  it('reads and writes --authfile / REGISTRY_AUTH_FILE instead of DOCKER_CONFIG', async () => {
    const authFile = join(work, 'containers', 'auth.json');
    const login = await splinter(
      ['login', registry.host, '-u', 'splinter', '--password-stdin', '--authfile', authFile, '--insecure'],
      env,
      registry.password,
    );
    expect(login.code, login.stderr).toBe(0);
    expect(JSON.parse(await readFile(authFile, 'utf8')).auths[registry.host].auth).toBeDefined();
    const inspected = await splinter(['inspect', `${registry.host}/game/eu-1:1.0.0`, '--json'], {
      ...env,
      REGISTRY_AUTH_FILE: authFile,
      SPLINTER_INSECURE: '1',
    });
    expect(inspected.code, inspected.stderr).toBe(0);
    const viaFlag = await splinter(
      ['inspect', `${registry.host}/game/eu-1:1.0.0`, '--registry-config', authFile, '--insecure'],
      env,
    );
    expect(viaFlag.code, viaFlag.stderr).toBe(0);
    const out = await splinter(['logout', registry.host, '--registry-config', authFile], env);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(await readFile(authFile, 'utf8')).auths).toEqual({});
  });

  it('stores the login in a configured credential helper, and erases it on logout', async () => {
    const bin = join(work, 'bin');
    const store = join(work, 'helper-store');
    await mkdir(bin, { recursive: true });
    await mkdir(store, { recursive: true });
    // A docker credential helper (the documented protocol) keeping one file per server.
    const helper = join(bin, 'docker-credential-splintertest');
    await writeFile(
      helper,
      [
        '#!/bin/sh',
        `dir=${store}`,
        'case "$1" in',
        '  store) json=$(cat); server=$(printf %s "$json" | sed \'s/.*"ServerURL":"\\([^"]*\\)".*/\\1/\'); printf %s "$json" > "$dir/$(printf %s "$server" | tr : _)" ;;',
        '  get) read server; f="$dir/$(printf %s "$server" | tr : _)"; [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }; cat "$f" ;;',
        '  erase) read server; f="$dir/$(printf %s "$server" | tr : _)"; [ -f "$f" ] || { echo "credentials not found in native keychain"; exit 1; }; rm "$f"; echo erased "$server" >> "$dir/log" ;;',
        'esac',
        '',
      ].join('\n'),
    );
    await chmod(helper, 0o755);
    const dockerDir = join(work, 'helper-docker');
    await mkdir(dockerDir);
    await writeFile(join(dockerDir, 'config.json'), JSON.stringify({ credsStore: 'splintertest' }));
    const helperEnv = {
      ...env,
      DOCKER_CONFIG: dockerDir,
      SPLINTER_CA_FILE: registry.caFile!,
      PATH: `${bin}${delimiter}${process.env.PATH}`,
    };
    const login = await splinter(
      ['login', `https://${registry.host}`, '-u', 'splinter', '--password-stdin'],
      helperEnv,
      registry.password,
    );
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain('docker-credential-splintertest');
    const config = JSON.parse(await readFile(join(dockerDir, 'config.json'), 'utf8'));
    expect(config.auths).toEqual({ [registry.host]: {} });
    expect(JSON.stringify(config)).not.toContain(registry.password);
    const saved = JSON.parse(await readFile(join(store, registry.host.replace(':', '_')), 'utf8'));
    expect(saved).toEqual({ ServerURL: registry.host, Username: 'splinter', Secret: registry.password });

    const inspected = await splinter(['inspect', `${registry.host}/game/eu-1:1.0.0`], helperEnv);
    expect(inspected.code, inspected.stderr).toBe(0);

    const logout = await splinter(['logout', registry.host], helperEnv);
    expect(logout.code, logout.stderr).toBe(0);
    expect(await readFile(join(store, 'log'), 'utf8')).toBe(`erased ${registry.host}\n`);
    const refused = await splinter(['inspect', `${registry.host}/game/eu-1:1.0.0`], helperEnv);
    expect(refused.code).toBe(6);
  });

  it('explains --registry http://… instead of calling the repository not lowercase', async () => {
    const result = await splinter(
      [
        'patch',
        'push',
        SAMPLE,
        '--realm',
        'eu-1',
        '--version',
        '9.0.0',
        '--registry',
        `http://${registry.host}/game`,
      ],
      env,
    );
    expect(result.code).toBe(2);
    // The core states the fact; the CLI, which knows its flags, adds the way out.
    expect(result.stderr).toMatch(
      /^splinter: INVALID_REFERENCE: registry "http:.*": http:\/\/ is not how a registry is given; give host\[:port\]\nsplinter: hint: give it without http:\/\/ and add --plain-http \(or SPLINTER_PLAIN_HTTP=1\), as oras does\n/,
    );
    expect(result.stderr).not.toMatch(/lowercase/);
    const reference = await splinter(['inspect', `http://${registry.host}/game/eu-1:1.0.0`, '--json'], env);
    expect(reference.code).toBe(2);
    expect(reference.stderr).toMatch(
      /^splinter: INVALID_REFERENCE: invalid reference .*: references take no scheme/,
    );
    expect(JSON.parse(reference.stdout).error).toMatchObject({
      code: 'INVALID_REFERENCE',
      details: { reason: 'http-scheme' },
      hint: expect.stringMatching(/--plain-http/),
    });
  });
});

describe('identity tokens with the testkit token service behind TLS', () => {
  let work: string;
  let registry: RunningRegistry;
  let env: Record<string, string>;
  beforeAll(async () => {
    work = await tempDir('identity');
    registry = await startRegistry({ auth: 'token', tls: true });
    env = {
      SPLINTER_HOME: join(work, 'home'),
      DOCKER_CONFIG: join(work, 'docker'),
      SPLINTER_CA_FILE: registry.caFile!,
      HTTPS_PROXY: '',
      https_proxy: '',
    };
  });
  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('logs in with --identity-token-stdin and pushes with it as an OAuth2 refresh token', async () => {
    const service = registry.tokenService!;
    const refused = await splinter(
      ['login', registry.host, '--identity-token-stdin'],
      env,
      'refresh-never-issued\n',
    );
    expect(refused.code).toBe(6);
    expect(refused.stderr).not.toContain('refresh-never-issued');

    const token = service.issueRefreshToken('splinter');
    const grants = service.grants.length;
    const login = await splinter(['login', registry.host, '--identity-token-stdin'], env, `${token}\n`);
    expect(login.code, login.stderr).toBe(0);
    const config = JSON.parse(await readFile(join(work, 'docker', 'config.json'), 'utf8'));
    expect(config.auths[registry.host]).toEqual({ identitytoken: token });

    const pushed = await splinter(
      [
        'patch',
        'push',
        SAMPLE,
        '--realm',
        'eu-2',
        '--version',
        '1.0.0',
        '--registry',
        `${registry.host}/game`,
      ],
      env,
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const used = service.grants.slice(grants);
    expect(used.length).toBeGreaterThan(1);
    expect(new Set(used)).toEqual(new Set(['refresh_token']));
    expect(service.userAgents.every((agent) => agent?.startsWith('splinter/'))).toBe(true);
  });
});

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { certificateAuthority, type SelfSignedCertificate } from './certificate.js';
import { freePort } from './ports.js';
import { startTokenService, type TokenService } from './token-service.js';
import { requireTool } from './tools.js';

export interface RegistryOptions {
  auth?: 'none' | 'htpasswd' | 'token';
  /** Users for htpasswd or token auth (default: `splinter` / `s3cret-pass`). */
  users?: Record<string, string>;
  /**
   * Serve https with a certificate from a private CA made for this registry (and the token service,
   * with auth 'token'), valid for 127.0.0.1, localhost and `hostnames`. `caFile` is the CA to trust.
   */
  tls?: boolean;
  /** Extra DNS names for the TLS certificate (a name a proxy resolves, for instance). */
  hostnames?: string[];
}

export interface RunningRegistry {
  /** `127.0.0.1:PORT`, as used in references. */
  host: string;
  /** `http://host` or, with tls, `https://host`. */
  url: string;
  /** With tls: the PEM file of the private CA that signed the registry's certificate. */
  caFile: string | undefined;
  username: string | undefined;
  password: string | undefined;
  tokenService: TokenService | undefined;
  /** A DOCKER_CONFIG folder holding these credentials. */
  dockerConfigDir: string;
  /** The registry's filesystem storage: every blob it holds is a file under here. */
  storageDir: string;
  stop(): Promise<void>;
}

/**
 * Starts CNCF Distribution (`docker-registry serve`, Debian's package) on a free loopback port with
 * filesystem storage in a temporary folder, and waits until it answers.
 */
export async function startRegistry(options: RegistryOptions = {}): Promise<RunningRegistry> {
  const binary = requireTool('docker-registry');
  const auth = options.auth ?? 'none';
  const users = options.users ?? { splinter: 's3cret-pass' };
  const [username, password] = auth === 'none' ? [undefined, undefined] : Object.entries(users)[0]!;
  const dir = await mkdtemp(join(tmpdir(), 'splinter-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let tokenService: TokenService | undefined;
  let authConfig = '';
  let tlsConfig = '';
  let serving: SelfSignedCertificate | undefined;
  let caFile: string | undefined;
  if (options.tls) {
    const ca = certificateAuthority({ dir, commonName: 'splinter-test-registry-ca' });
    serving = ca.issue({
      name: 'registry',
      dnsNames: ['localhost', ...(options.hostnames ?? [])],
      ipAddresses: ['127.0.0.1'],
    });
    caFile = ca.certificatePath;
    tlsConfig = `  tls:\n    certificate: ${serving.certificatePath}\n    key: ${serving.keyPath}\n`;
  }
  if (auth === 'htpasswd') {
    const lines = Object.entries(users).map(([user, pass]) => `${user}:${bcrypt.hashSync(pass, 5)}`);
    await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
    authConfig = `auth:\n  htpasswd:\n    realm: splinter-test\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (auth === 'token') {
    tokenService = await startTokenService({
      users,
      dir,
      service: host,
      ...(serving ? { tls: { key: serving.key, certificate: serving.certificate } } : {}),
    });
    authConfig = [
      'auth:',
      '  token:',
      `    realm: ${tokenService.url}/token`,
      `    service: ${host}`,
      `    issuer: ${tokenService.issuer}`,
      `    rootcertbundle: ${tokenService.certificatePath}`,
      '',
    ].join('\n');
  }
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    tlsConfig,
    authConfig,
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), config);
  const dockerConfigDir = join(dir, 'docker');
  await import('node:fs/promises').then((fs) => fs.mkdir(dockerConfigDir));
  const auths =
    username === undefined
      ? {}
      : { [host]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } };
  await writeFile(join(dockerConfigDir, 'config.json'), JSON.stringify({ auths }));

  const child = spawn(binary, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const url = `${options.tls ? 'https' : 'http'}://${host}`;
  await waitUntilUp(`${url}/v2/`, child, () => stderr, caFile);
  return {
    host,
    url,
    caFile,
    username,
    password,
    tokenService,
    dockerConfigDir,
    storageDir: join(dir, 'data'),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) =>
        child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve),
      );
      await tokenService?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function waitUntilUp(
  url: string,
  child: ChildProcess,
  stderr: () => string,
  caFile: string | undefined,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  const ca = caFile ? await readFile(caFile, 'utf8') : undefined;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      const status = await statusOf(url, ca);
      if (status === 200 || status === 401) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`docker-registry did not answer at ${url}: ${stderr()}`);
}

/** The status of a GET, over https trusting `ca` when given. */
function statusOf(url: string, ca: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = (url.startsWith('https:') ? httpsRequest : httpRequest)(
      url,
      ca ? { ca } : {},
      (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      },
    );
    request.on('error', reject);
    request.end();
  });
}

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { freePort } from './ports.js';
import { startTokenService, type TokenService } from './token-service.js';
import { requireTool } from './tools.js';

export interface RegistryOptions {
  auth?: 'none' | 'htpasswd' | 'token';
  /** Users for htpasswd or token auth (default: `splinter` / `s3cret-pass`). */
  users?: Record<string, string>;
}

export interface RunningRegistry {
  /** `127.0.0.1:PORT`, as used in references. */
  host: string;
  url: string;
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
  if (auth === 'htpasswd') {
    const lines = Object.entries(users).map(([user, pass]) => `${user}:${bcrypt.hashSync(pass, 5)}`);
    await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
    authConfig = `auth:\n  htpasswd:\n    realm: splinter-test\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (auth === 'token') {
    tokenService = await startTokenService({ users, dir, service: host });
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
  await waitUntilUp(`http://${host}/v2/`, child, () => stderr);
  return {
    host,
    url: `http://${host}`,
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

async function waitUntilUp(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      const response = await fetch(url);
      if (response.status === 200 || response.status === 401) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`docker-registry did not answer at ${url}: ${stderr()}`);
}

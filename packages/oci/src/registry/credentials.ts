import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { SplinterError } from '@splintertree/errors';

export interface Credential {
  username?: string;
  password?: string;
  /** An identity (refresh) token, used with the OAuth2 token flow. */
  identityToken?: string;
}

export type CredentialSource = (registry: string) => Promise<Credential | undefined>;

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/**
 * Credentials as docker and oras find them: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`;
 * `credHelpers[host]`, then `credsStore` (both run `docker-credential-<name> get`), then `auths`.
 */
export function dockerConfigCredentials(configDir?: string): CredentialSource {
  const path = join(configDir ?? join(homedir(), '.docker'), 'config.json');
  let loaded: Promise<DockerConfig | undefined> | undefined;
  return async (registry) => {
    loaded ??= readConfig(path);
    const config = await loaded;
    if (!config) return undefined;
    const helper = config.credHelpers?.[registry] ?? config.credsStore;
    if (helper) {
      const fromHelper = await runCredentialHelper(helper, registry);
      if (fromHelper) return fromHelper;
    }
    const entry = findAuth(config, registry);
    if (!entry) return undefined;
    if (entry.identitytoken) return { identityToken: entry.identitytoken };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0)
        throw new SplinterError(
          'CREDENTIALS_ERROR',
          `${path}: auths["${registry}"].auth is not user:password`,
        );
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username !== undefined) return { username: entry.username, password: entry.password ?? '' };
    return undefined;
  };
}

async function readConfig(path: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SplinterError('CREDENTIALS_ERROR', `cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as DockerConfig;
  } catch (error) {
    throw new SplinterError('CREDENTIALS_ERROR', `${path} is not valid JSON: ${(error as Error).message}`);
  }
}

function findAuth(config: DockerConfig, registry: string) {
  const auths = config.auths ?? {};
  for (const key of Object.keys(auths)) {
    const host = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
    if (host === registry) return auths[key];
  }
  return undefined;
}

function runCredentialHelper(name: string, registry: string): Promise<Credential | undefined> {
  return new Promise((resolve, reject) => {
    const program = `docker-credential-${name}`;
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('error', (error) =>
      reject(
        new SplinterError(
          'CREDENTIALS_ERROR',
          `credential helper ${program} failed to start: ${error.message}`,
        ),
      ),
    );
    child.on('close', (code) => {
      if (code !== 0) {
        // Helpers answer "credentials not found" with a non-zero exit: that means anonymous, not failure.
        if (/not found/i.test(stdout + stderr)) return resolve(undefined);
        return reject(
          new SplinterError('CREDENTIALS_ERROR', `${program} get exited ${code}: ${stderr.trim()}`),
        );
      }
      try {
        const parsed = JSON.parse(stdout) as { Username?: string; Secret?: string };
        if (parsed.Username === '<token>') return resolve({ identityToken: parsed.Secret ?? '' });
        resolve({ username: parsed.Username ?? '', password: parsed.Secret ?? '' });
      } catch {
        reject(new SplinterError('CREDENTIALS_ERROR', `${program} get printed no JSON`));
      }
    });
    child.stdin.end(registry);
  });
}

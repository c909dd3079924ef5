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
  /**
   * Where the credential came from, for error messages: `auth file PATH`, `credential helper
   * docker-credential-NAME`. Never the secret. A Credential with only a source is anonymous.
   */
  source?: string;
}

export type CredentialSource = (registry: string) => Promise<Credential | undefined>;

export interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [other: string]: unknown;
}

export interface AuthFileOptions {
  /** `--registry-config` / `--authfile`: the auth file itself. */
  authFile?: string | undefined;
  /** REGISTRY_AUTH_FILE, as podman and skopeo read it. */
  registryAuthFile?: string | undefined;
  /** DOCKER_CONFIG: the folder of docker's `config.json`. */
  configDir?: string | undefined;
}

/**
 * The auth file to read and write: `--registry-config`/`--authfile`, else REGISTRY_AUTH_FILE, else
 * `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
 */
export function authFilePath(options: AuthFileOptions = {}): string {
  return (
    options.authFile ??
    options.registryAuthFile ??
    join(options.configDir ?? join(homedir(), '.docker'), 'config.json')
  );
}

/**
 * Credentials as docker and oras find them, in the auth file authFilePath names:
 * `credHelpers[host]`, then `credsStore` (both run `docker-credential-<name> get`), then `auths`.
 * A string argument is a DOCKER_CONFIG folder, as before.
 */
export function dockerConfigCredentials(options?: string | AuthFileOptions): CredentialSource {
  const path = authFilePath(typeof options === 'string' ? { configDir: options } : options);
  let loaded: Promise<DockerConfig | undefined> | undefined;
  return async (registry) => {
    loaded ??= readDockerConfig(path);
    const config = await loaded;
    const anonymous = { source: `anonymous (no credentials for ${registry} in ${path})` };
    if (!config) return { source: `anonymous (no auth file at ${path})` };
    const helper = config.credHelpers?.[registry] ?? config.credsStore;
    if (helper) {
      const fromHelper = await runCredentialHelper(helper, registry);
      if (fromHelper) return { ...fromHelper, source: `credential helper docker-credential-${helper}` };
    }
    const entry = findAuth(config, registry);
    if (!entry) return anonymous;
    const source = `auth file ${path}`;
    if (entry.identitytoken)
      return { identityToken: entry.identitytoken, source: `identity token in ${path}` };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0)
        throw new SplinterError(
          'CREDENTIALS_ERROR',
          `${path}: auths["${registry}"].auth is not user:password`,
        );
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source };
    }
    if (entry.username !== undefined)
      return { username: entry.username, password: entry.password ?? '', source };
    return anonymous;
  };
}

/** Reads an auth file; undefined when it does not exist. */
export async function readDockerConfig(path: string): Promise<DockerConfig | undefined> {
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

/** The `auths` key that names `registry` (docker accepts `https://host/v1/` spellings too). */
export function authKeyFor(config: DockerConfig, registry: string): string | undefined {
  const auths = config.auths ?? {};
  for (const key of Object.keys(auths)) {
    const host = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
    if (host === registry) return key;
  }
  return undefined;
}

function findAuth(config: DockerConfig, registry: string) {
  const key = authKeyFor(config, registry);
  return key === undefined ? undefined : config.auths?.[key];
}

function runCredentialHelper(name: string, registry: string): Promise<Credential | undefined> {
  return credentialHelper(name, 'get', registry).then((stdout) => {
    if (stdout === undefined) return undefined;
    try {
      const parsed = JSON.parse(stdout) as { Username?: string; Secret?: string };
      if (parsed.Username === '<token>') return { identityToken: parsed.Secret ?? '' };
      return { username: parsed.Username ?? '', password: parsed.Secret ?? '' };
    } catch {
      throw new SplinterError('CREDENTIALS_ERROR', `docker-credential-${name} get printed no JSON`);
    }
  });
}

/**
 * Runs `docker-credential-<name> <action>` with `input` on standard input, as docker's credential
 * helper protocol says; resolves its standard output, or undefined when the helper answers
 * "credentials not found".
 */
export function credentialHelper(
  name: string,
  action: 'get' | 'store' | 'erase',
  input: string,
): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const program = `docker-credential-${name}`;
    const child = spawn(program, [action], { stdio: ['pipe', 'pipe', 'pipe'] });
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
        // Helpers print their error on stdout; neither stream holds a secret.
        const said = (stderr.trim() || stdout.trim()).slice(0, 300);
        return reject(new SplinterError('CREDENTIALS_ERROR', `${program} ${action} exited ${code}: ${said}`));
      }
      resolve(stdout);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

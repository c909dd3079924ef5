import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import { authKeyFor, credentialHelper, type DockerConfig, readDockerConfig } from './credentials.js';

export interface StoredLogin {
  /** The auth file that was written. */
  authFile: string;
  /** `docker-credential-NAME` when a configured helper holds the secret; undefined when the file does. */
  helper: string | undefined;
  /** Set when a helper is configured but not installed, so the secret went into the file instead. */
  helperMissing?: string;
}

/** The helper docker would use for `registry`: `credHelpers[registry]`, else `credsStore`. */
function helperFor(config: DockerConfig, registry: string): string | undefined {
  return config.credHelpers?.[registry] ?? config.credsStore;
}

function isMissingProgram(error: unknown): boolean {
  return error instanceof SplinterError && /failed to start: .*ENOENT/.test(error.message);
}

/**
 * `splinter login`: saves a login as `docker login` and `oras login` do. With a configured credential
 * helper that is installed, the secret goes to `docker-credential-NAME store` and the file keeps an
 * empty `auths[registry]` entry; otherwise `auths[registry].auth` holds base64 `user:password`. Every
 * other key of the file is kept; the file is written whole (temporary file, then rename) with mode 0600.
 */
export async function storeLogin(
  authFile: string,
  registry: string,
  login: { username: string; password: string } | { identityToken: string },
): Promise<StoredLogin> {
  // An identity token is kept as docker and oras keep it: `auths[registry].identitytoken` in the file,
  // or Username `<token>` in a credential helper.
  const [username, secret] =
    'identityToken' in login ? ['<token>', login.identityToken] : [login.username, login.password];
  const config: DockerConfig = (await readDockerConfig(authFile)) ?? {};
  const helper = helperFor(config, registry);
  const auths = { ...(config.auths ?? {}) };
  const existing = authKeyFor(config, registry);
  if (existing !== undefined && existing !== registry) delete auths[existing];
  let stored: StoredLogin = { authFile, helper: undefined };
  if (helper !== undefined) {
    try {
      await credentialHelper(
        helper,
        'store',
        JSON.stringify({ ServerURL: registry, Username: username, Secret: secret }),
      );
      auths[registry] = {};
      stored = { authFile, helper: `docker-credential-${helper}` };
    } catch (error) {
      if (!isMissingProgram(error)) throw error;
      stored = { authFile, helper: undefined, helperMissing: `docker-credential-${helper}` };
    }
  }
  if (stored.helper === undefined) {
    auths[registry] =
      'identityToken' in login
        ? { identitytoken: login.identityToken }
        : { auth: Buffer.from(`${login.username}:${login.password}`).toString('base64') };
  }
  await writeAuthFile(authFile, { ...config, auths });
  return stored;
}

/**
 * `splinter logout`: removes the registry's `auths` entry and, with a configured helper, erases its
 * secret there. Resolves false when there was nothing to remove (docker then says "not logged in").
 */
export async function removeLogin(
  authFile: string,
  registry: string,
): Promise<{ removed: boolean; helper: string | undefined }> {
  const config = await readDockerConfig(authFile);
  if (!config) return { removed: false, helper: undefined };
  const helper = helperFor(config, registry);
  let removed = false;
  let erasedBy: string | undefined;
  if (helper !== undefined) {
    try {
      // `erase` of an unknown server: helpers answer "credentials not found" (undefined) or succeed.
      const answer = await credentialHelper(helper, 'erase', registry);
      if (answer !== undefined) {
        removed = true;
        erasedBy = `docker-credential-${helper}`;
      }
    } catch (error) {
      if (!isMissingProgram(error)) throw error;
    }
  }
  const key = authKeyFor(config, registry);
  if (key !== undefined) {
    const auths = { ...(config.auths ?? {}) };
    delete auths[key];
    await writeAuthFile(authFile, { ...config, auths });
    removed = true;
  }
  return { removed, helper: erasedBy };
}

async function writeAuthFile(path: string, config: DockerConfig): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(temporary, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new SplinterError(
      'CREDENTIALS_ERROR',
      `cannot write ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

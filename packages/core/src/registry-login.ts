import { SplinterError } from '@splintertree/errors';
import { authFilePath, RegistryClient, removeLogin, storeLogin } from '@splintertree/oci';
import { registryHostOf } from './locations.js';
import type { Settings } from './settings.js';
import type { RegistryAccess } from './stores.js';

export interface LoginInput {
  registry: string;
  /** A user name and password, or an identity (OAuth2 refresh) token as oras --identity-token takes it. */
  username?: string | undefined;
  password?: string | undefined;
  identityToken?: string | undefined;
  plainHttp: boolean;
  access: RegistryAccess;
  settings: Settings;
}

export interface LoginResult {
  registry: string;
  /** The auth file written. */
  authFile: string;
  /** `docker-credential-NAME` when the secret went to a credential helper. */
  credentialHelper: string | undefined;
  /** A configured helper that is not installed: the secret went into the file instead. */
  missingHelper: string | undefined;
}

function authFileOf(access: RegistryAccess, settings: Settings): string {
  return authFilePath({
    authFile: access.authFile,
    registryAuthFile: settings.registryAuthFile,
    configDir: settings.dockerConfigDir,
  });
}

/**
 * `splinter login`: checks the login against the registry (`GET /v2/`, answering its Basic or token
 * challenge, as docker and oras do) and only then saves it.
 */
export async function registryLogin(input: LoginInput): Promise<LoginResult> {
  const registry = registryHostOf(input.registry);
  if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/.test(registry)) {
    throw new SplinterError(
      'INVALID_REFERENCE',
      `registry ${JSON.stringify(input.registry)} is not host[:port]`,
    );
  }
  const login =
    input.identityToken !== undefined
      ? { identityToken: input.identityToken }
      : { username: input.username ?? '', password: input.password ?? '' };
  if ('username' in login && login.username === '')
    throw new SplinterError('INVALID_ARGUMENT', 'the username is empty');
  const authFile = authFileOf(input.access, input.settings);
  const client = new RegistryClient({
    registry,
    plainHttp: input.plainHttp,
    credentials: async () => ({ ...login, source: `the login given for ${registry}` }),
    transport: { caFile: input.access.caFile, insecure: input.access.insecure, proxy: input.settings.proxy },
    retry: { maxAttempts: 2 },
  });
  try {
    await client.ping();
  } finally {
    await client.close();
  }
  const stored = await storeLogin(authFile, registry, login);
  return {
    registry,
    authFile,
    credentialHelper: stored.helper,
    missingHelper: stored.helperMissing,
  };
}

/** `splinter logout`: forgets the registry's login in the auth file and its credential helper. */
export async function registryLogout(input: {
  registry: string;
  access: RegistryAccess;
  settings: Settings;
}): Promise<{ registry: string; authFile: string; removed: boolean; credentialHelper: string | undefined }> {
  const registry = registryHostOf(input.registry);
  const authFile = authFileOf(input.access, input.settings);
  const { removed, helper } = await removeLogin(authFile, registry);
  return { registry, authFile, removed, credentialHelper: helper };
}

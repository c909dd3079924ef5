import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  type DatabaseTimeouts,
  DEFAULT_APPLICATION_NAME,
  DEFAULT_DATABASE_TIMEOUTS,
  DEFAULT_POOL_SIZE,
} from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import { type ProxySettings, proxySettingsFromEnvironment } from '@splintertree/oci';
import { decodeKey32 } from '@splintertree/seal';
import { z } from 'zod';

export const KEK_NOTATION = 'must be 32 bytes written as base64 (44 characters) or as 64 hex digits';

/** Everything splinter reads from its environment, parsed once at the edge (CLI, API) and passed down typed. */
export interface Settings {
  /** Local state: the embedded OCI store, the embedded database, the content cache. */
  home: string;
  patchRegistry: string | undefined;
  modRegistry: string | undefined;
  /** Unset means the embedded PGlite database under `home`. */
  databaseUrl: string | undefined;
  /** COSIGN_PASSWORD wins over SPLINTER_PASSWORD; a set-but-empty value is an empty password (cosign semantics). */
  keyPassword: string | undefined;
  dockerConfigDir: string | undefined;
  /** REGISTRY_AUTH_FILE (podman, skopeo): the auth file, over DOCKER_CONFIG; `--registry-config` wins. */
  registryAuthFile: string | undefined;
  /** SPLINTER_CA_FILE: `--ca-file`'s default. */
  caFile: string | undefined;
  /** SPLINTER_INSECURE: `--insecure`'s default (TLS without verification). */
  insecure: boolean;
  /** SPLINTER_PLAIN_HTTP: `--plain-http`'s default. */
  plainHttp: boolean;
  /** HTTP_PROXY, HTTPS_PROXY, NO_PROXY (and lower-case spellings), as Go programs read them. */
  proxy: ProxySettings;
  /** SPLINTER_CHUNK_THREADS: worker threads that chunk a push (default: see defaultChunkThreads in pack). */
  chunkThreads: number | undefined;
  /** SOURCE_DATE_EPOCH, for reproducible `org.opencontainers.image.created` values. */
  sourceDateEpoch: number | undefined;
  /** SPLINTER_KEK, decoded: the key-encryption key that wraps preload keys at rest. */
  kek: Uint8Array | undefined;
  /** SPLINTER_KEK_FILE: a file holding the KEK in the same notation, read when a KEK is needed. */
  kekFile: string | undefined;
  /**
   * PostgreSQL timeouts in milliseconds, 0 for none: SPLINTER_DB_CONNECT_TIMEOUT_MS (default 10000),
   * SPLINTER_DB_STATEMENT_TIMEOUT_MS (30000; lock waits included) and
   * SPLINTER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS (60000). Unused by the embedded PGlite database.
   */
  databaseTimeouts: DatabaseTimeouts;
  /** SPLINTER_DB_POOL_SIZE: PostgreSQL connections per process for queries, at most (default 10). */
  databasePoolSize: number;
  /**
   * SPLINTER_DB_APPLICATION_NAME: how the connections appear in pg_stat_activity (default `splinter`;
   * the API's LISTEN connection adds `-listener`). An application_name in DATABASE_URL wins.
   */
  databaseApplicationName: string;
  /** SPLINTER_TOKEN: a launcher token, for commands that call the launcher API (kept out of `ps`). */
  launcherToken: string | undefined;
  /** SPLINTER_RELEASE_KEY: the release key file that signs release statements (--release-key wins). */
  releaseKey: string | undefined;
  /** SPLINTER_RELEASE_PASSWORD, else the key password: the release key's password. */
  releaseKeyPassword: string | undefined;
}

/** The environment variable of each database timeout. */
export const DATABASE_TIMEOUT_VARIABLES = {
  connectMs: 'SPLINTER_DB_CONNECT_TIMEOUT_MS',
  statementMs: 'SPLINTER_DB_STATEMENT_TIMEOUT_MS',
  idleInTransactionMs: 'SPLINTER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS',
} as const satisfies Record<keyof DatabaseTimeouts, string>;

const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value));

/** PostgreSQL keeps timeouts in a 32-bit integer of milliseconds. */
const milliseconds = optionalText.refine(
  (value) => value === undefined || (/^\d{1,10}$/.test(value) && Number(value) <= 2 ** 31 - 1),
  { message: 'must be a whole number of milliseconds (0 for no limit, at most 2147483647)' },
);

/** A boolean variable: 1/true/yes/on or 0/false/no/off (any case); unset or empty is false. */
const flag = optionalText.refine(
  (value) => value === undefined || /^(1|0|true|false|yes|no|on|off)$/i.test(value),
  {
    message: 'must be 1, true, yes, on, or 0, false, no, off',
  },
);

function isOn(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value);
}

const environmentSchema = z
  .object({
    SPLINTER_HOME: optionalText,
    HOME: optionalText,
    SPLINTERTREE_PATCH_REGISTRY: optionalText,
    SPLINTERTREE_MOD_REGISTRY: optionalText,
    DATABASE_URL: optionalText.refine((value) => value === undefined || /^postgres(ql)?:\/\//.test(value), {
      message: 'must be a postgres:// or postgresql:// URL',
    }),
    COSIGN_PASSWORD: z.string().optional(),
    SPLINTER_PASSWORD: z.string().optional(),
    DOCKER_CONFIG: optionalText,
    REGISTRY_AUTH_FILE: optionalText,
    SPLINTER_CA_FILE: optionalText,
    SPLINTER_INSECURE: flag,
    SPLINTER_PLAIN_HTTP: flag,
    SOURCE_DATE_EPOCH: optionalText.refine((value) => value === undefined || /^\d+$/.test(value), {
      message: 'must be a whole number of seconds since 1970',
    }),
    SPLINTER_KEK: optionalText.refine((value) => value === undefined || decodeKey32(value) !== undefined, {
      message: KEK_NOTATION,
    }),
    SPLINTER_KEK_FILE: optionalText,
    SPLINTER_DB_CONNECT_TIMEOUT_MS: milliseconds,
    SPLINTER_DB_STATEMENT_TIMEOUT_MS: milliseconds,
    SPLINTER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: milliseconds,
    SPLINTER_DB_POOL_SIZE: optionalText.refine(
      (value) =>
        value === undefined || (/^\d{1,4}$/.test(value) && Number(value) >= 1 && Number(value) <= 1000),
      { message: 'must be a whole number of connections from 1 to 1000' },
    ),
    // PostgreSQL keeps 63 bytes of it and shows only printable ASCII.
    SPLINTER_DB_APPLICATION_NAME: optionalText.refine(
      (value) => value === undefined || /^[\x20-\x7e]{1,54}$/.test(value),
      { message: 'must be 1 to 54 printable ASCII characters' },
    ),
    SPLINTER_TOKEN: optionalText,
    SPLINTER_CHUNK_THREADS: optionalText.refine(
      (value) => value === undefined || /^([0-9]|[1-5][0-9]|6[0-4])$/.test(value),
      {
        message: 'must be a whole number of threads from 0 to 64',
      },
    ),
    SPLINTER_RELEASE_KEY: optionalText,
    SPLINTER_RELEASE_PASSWORD: z.string().optional(),
  })
  .refine((env) => env.SPLINTER_KEK === undefined || env.SPLINTER_KEK_FILE === undefined, {
    message: 'and SPLINTER_KEK are both set: give the key-encryption key one way only',
    path: ['SPLINTER_KEK_FILE'],
  });

export function settingsFromEnvironment(environment: Record<string, string | undefined>): Settings {
  const parsed = environmentSchema.safeParse(environment);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')} ${issue.message}`);
    throw new SplinterError('INVALID_CONFIG', `invalid environment: ${problems.join('; ')}`, {
      details: { problems },
    });
  }
  const env = parsed.data;
  return {
    home: env.SPLINTER_HOME ?? join(env.HOME ?? homedir(), '.splinter'),
    patchRegistry: env.SPLINTERTREE_PATCH_REGISTRY,
    modRegistry: env.SPLINTERTREE_MOD_REGISTRY,
    databaseUrl: env.DATABASE_URL,
    keyPassword: env.COSIGN_PASSWORD ?? env.SPLINTER_PASSWORD,
    dockerConfigDir: env.DOCKER_CONFIG,
    registryAuthFile: env.REGISTRY_AUTH_FILE,
    caFile: env.SPLINTER_CA_FILE,
    insecure: isOn(env.SPLINTER_INSECURE),
    plainHttp: isOn(env.SPLINTER_PLAIN_HTTP),
    proxy: proxySettingsFromEnvironment(environment),
    chunkThreads: env.SPLINTER_CHUNK_THREADS === undefined ? undefined : Number(env.SPLINTER_CHUNK_THREADS),
    sourceDateEpoch: env.SOURCE_DATE_EPOCH === undefined ? undefined : Number(env.SOURCE_DATE_EPOCH),
    kek: env.SPLINTER_KEK === undefined ? undefined : decodeKey32(env.SPLINTER_KEK),
    kekFile: env.SPLINTER_KEK_FILE,
    databaseTimeouts: databaseTimeouts(env),
    databasePoolSize:
      env.SPLINTER_DB_POOL_SIZE === undefined ? DEFAULT_POOL_SIZE : Number(env.SPLINTER_DB_POOL_SIZE),
    databaseApplicationName: env.SPLINTER_DB_APPLICATION_NAME?.trim() ?? DEFAULT_APPLICATION_NAME,
    launcherToken: env.SPLINTER_TOKEN?.trim(),
    releaseKey: env.SPLINTER_RELEASE_KEY,
    releaseKeyPassword: env.SPLINTER_RELEASE_PASSWORD ?? env.COSIGN_PASSWORD ?? env.SPLINTER_PASSWORD,
  };
}

function databaseTimeouts(env: Record<string, string | undefined>): DatabaseTimeouts {
  const timeouts = { ...DEFAULT_DATABASE_TIMEOUTS };
  for (const [key, variable] of Object.entries(DATABASE_TIMEOUT_VARIABLES)) {
    const value = env[variable];
    if (value !== undefined) timeouts[key as keyof DatabaseTimeouts] = Number(value);
  }
  return timeouts;
}

import { isIP } from 'node:net';
import { launcherConfigProblems, type Settings } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import { z } from 'zod';
import { DEFAULT_HEARTBEAT_MS } from './launcher-service.js';
import { DEFAULT_JWT_ALGORITHMS, type PlayerTokenConfig } from './player-tokens.js';

export interface ApiConfig {
  host: string;
  port: number;
  /** Requests per second each launcher token may make, on average. */
  rateLimit: number;
  /** Requests a token may make at once before the average applies. */
  burst: number;
  /** Failed authentications per second allowed per client address and per token id, on average. */
  failureRate: number;
  /** Failed authentications allowed at once per address and per token id before the average applies. */
  failureBurst: number;
  /**
   * Which peers may name the client address in X-Forwarded-For (fastify's trustProxy): false (none:
   * the address is the TCP peer's), true (any peer), or the proxies' addresses and CIDR ranges.
   */
  trustProxy: boolean | string[];
  /** Heartbeat interval of the LISTEN connection, in ms (see LauncherOptions.heartbeatMs). */
  listenHeartbeat: number;
  /** Time for a request's headers and body to arrive, in ms; a slower one is answered 408 and closed. */
  requestTimeout: number;
  /** A connection with a request open and no byte either way for this long is destroyed, in ms. */
  connectionTimeout: number;
  /** An idle keep-alive connection is closed after this long, in ms. */
  keepAliveTimeout: number;
  /** Largest request body accepted, in bytes (413 beyond it). */
  bodyLimit: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * Seconds a realm view may be reused: `Cache-Control: max-age` of the answer, and how long the
   * server serves one database read of it (a head change drops it at once). 0: read every time.
   */
  viewMaxAge: number;
  /** `private` (default: only the launcher may cache the view) or `public` (a CDN or ingress may too). */
  viewCache: 'private' | 'public';
  /** Serve /metrics on this port (same host) instead of the public one, where it is then absent. */
  metricsPort?: number | undefined;
  /** Redis holding the rate and failure buckets for every replica; unset: this process's memory. */
  redisUrl?: string | undefined;
  /** Prefix of every Redis key (one per deployment sharing a Redis). */
  redisPrefix: string;
  /** Players' JWTs are accepted when set (see PlayerTokens); realm tokens always are. */
  jwt: PlayerTokenConfig | undefined;
}

const wholeNumber = (name: string, min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number`)
    .transform(Number)
    .refine((n) => n >= min && n <= max, `${name} must be from ${min} to ${max}`);

const flagsSchema = z.object({
  host: z.string().min(1, '--host must not be empty').default('127.0.0.1'),
  port: wholeNumber('--port', 0, 65535).default(8080),
  rateLimit: wholeNumber('--rate-limit', 1, 1_000_000).default(50),
  burst: wholeNumber('--burst', 1, 1_000_000).default(100),
  failureRate: wholeNumber('--failure-rate', 1, 1_000_000).default(1),
  failureBurst: wholeNumber('--failure-burst', 1, 1_000_000).default(20),
  trustProxy: z
    .string()
    .transform((value, context) => {
      const parsed = parseTrustProxy(value);
      if (parsed === undefined) {
        context.addIssue({
          code: 'custom',
          message:
            '--trust-proxy must be true, false or a comma-separated list of addresses, CIDR ranges, loopback, linklocal or uniquelocal',
        });
        return z.NEVER;
      }
      return parsed;
    })
    .default(false),
  listenHeartbeat: wholeNumber('--listen-heartbeat', 10, 600_000).default(DEFAULT_HEARTBEAT_MS),
  requestTimeout: wholeNumber('--request-timeout', 100, 3_600_000).default(10_000),
  connectionTimeout: wholeNumber('--connection-timeout', 100, 3_600_000).default(30_000),
  keepAliveTimeout: wholeNumber('--keep-alive-timeout', 100, 3_600_000).default(72_000),
  bodyLimit: wholeNumber('--body-limit', 0, 100 * 1024 * 1024).default(16 * 1024),
  logLevel: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: '--log-level must be one of fatal, error, warn, info, debug, trace, silent',
    })
    .default('info'),
  viewMaxAge: wholeNumber('--view-max-age', 0, 3600).default(2),
  viewCache: z
    .enum(['private', 'public'], { error: '--view-cache must be private or public' })
    .default('private'),
  jwtJwksUrl: z
    .string()
    .refine(
      (value) => /^https?:\/\//.test(value) && URL.canParse(value),
      '--jwt-jwks-url must be an http(s) URL',
    )
    .optional(),
  jwtPublicKey: z.string().min(1, '--jwt-public-key must name a PEM file').optional(),
  jwtIssuer: z.string().min(1, '--jwt-issuer must not be empty').optional(),
  jwtAudience: z.string().min(1, '--jwt-audience must not be empty').optional(),
  jwtRealmClaim: z.string().min(1, '--jwt-realm-claim must not be empty').default('realm'),
  jwtClockTolerance: wholeNumber('--jwt-clock-tolerance', 0, 300).default(30),
  jwtAlgorithms: z
    .string()
    .transform((value) => value.split(',').map((entry) => entry.trim()))
    .refine(
      (list) => list.length > 0 && list.every((alg) => DEFAULT_JWT_ALGORITHMS.includes(alg)),
      `--jwt-algorithms must be a comma-separated list of ${DEFAULT_JWT_ALGORITHMS.join(', ')}`,
    )
    .optional(),
  jwksTimeout: wholeNumber('--jwks-timeout', 100, 60_000).default(5000),
  redisUrl: z
    .string()
    .refine(
      (value) => /^rediss?:\/\//.test(value) && URL.canParse(value),
      '--redis-url must be a redis:// or rediss:// URL',
    )
    .optional(),
  metricsPort: wholeNumber('--metrics-port', 0, 65535).optional(),
  redisPrefix: z.string().max(200, '--redis-prefix must be at most 200 characters').default('splinter:api:'),
});

export type ApiFlags = { [K in keyof z.input<typeof flagsSchema>]?: string | undefined };

/**
 * Validates everything the API needs before it binds a port: flags, DATABASE_URL, the KEK. Every
 * problem is reported, one per line, in one INVALID_CONFIG error.
 */
export async function apiConfig(flags: ApiFlags, settings: Settings): Promise<ApiConfig> {
  const defined = Object.fromEntries(Object.entries(flags).filter(([, value]) => value !== undefined));
  const parsed = flagsSchema.safeParse(defined);
  const problems = parsed.success ? [] : parsed.error.issues.map((issue) => issue.message);
  const jwt = parsed.success ? playerTokenConfig(parsed.data, problems) : undefined;
  problems.push(...(await launcherConfigProblems(settings)));
  if (problems.length > 0 || !parsed.success) {
    throw new SplinterError(
      'INVALID_CONFIG',
      `cannot start the launcher API (${problems.length} ${problems.length === 1 ? 'problem' : 'problems'}): ${problems.join('; ')}`,
      {
        details: { problems },
      },
    );
  }
  const {
    jwtJwksUrl,
    jwtPublicKey,
    jwtIssuer,
    jwtAudience,
    jwtRealmClaim,
    jwtClockTolerance,
    jwtAlgorithms,
    jwksTimeout,
    ...rest
  } = parsed.data;
  return { ...rest, jwt };
}

/** The JWT settings, or undefined when players' JWTs are off; cross-flag problems go to `problems`. */
function playerTokenConfig(
  flags: z.output<typeof flagsSchema>,
  problems: string[],
): PlayerTokenConfig | undefined {
  const source = flags.jwtJwksUrl ?? flags.jwtPublicKey;
  if (flags.jwtJwksUrl !== undefined && flags.jwtPublicKey !== undefined) {
    problems.push('give --jwt-jwks-url or --jwt-public-key, not both');
  }
  if (source === undefined) {
    if (flags.jwtIssuer !== undefined || flags.jwtAudience !== undefined) {
      problems.push('--jwt-issuer and --jwt-audience need --jwt-jwks-url or --jwt-public-key');
    }
    return undefined;
  }
  if (flags.jwtIssuer === undefined)
    problems.push("player JWTs need --jwt-issuer (the identity provider's iss)");
  if (flags.jwtAudience === undefined)
    problems.push('player JWTs need --jwt-audience (the aud they are issued for)');
  if (flags.jwtIssuer === undefined || flags.jwtAudience === undefined) return undefined;
  return {
    jwksUrl: flags.jwtJwksUrl,
    publicKeyFile: flags.jwtPublicKey,
    issuer: flags.jwtIssuer,
    audience: flags.jwtAudience,
    realmClaim: flags.jwtRealmClaim,
    clockTolerance: flags.jwtClockTolerance,
    algorithms: flags.jwtAlgorithms ?? DEFAULT_JWT_ALGORITHMS,
    jwksTimeout: flags.jwksTimeout,
  };
}

const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

// No hop count: fastify 5 trusts no peer for one, since a count alone cannot tell a proxy from a client.
function parseTrustProxy(value: string): boolean | string[] | undefined {
  const text = value.trim();
  if (text === 'false') return false;
  if (text === 'true') return true;
  const entries = text.split(',').map((entry) => entry.trim());
  return entries.every(isProxyRange) ? entries : undefined;
}

function isProxyRange(entry: string): boolean {
  if (PROXY_RANGE_NAMES.has(entry) || isIP(entry) !== 0) return true;
  const [address = '', bits, ...rest] = entry.split('/');
  const family = isIP(address);
  return (
    family !== 0 &&
    rest.length === 0 &&
    bits !== undefined &&
    /^\d{1,3}$/.test(bits) &&
    Number(bits) <= (family === 4 ? 32 : 128)
  );
}

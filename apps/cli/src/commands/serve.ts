import type { ApiFlags } from '@splintertree/api';
import { type Command, Option } from 'commander';
import { loadSettings } from '../context.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the launcher API (realm chains, preload key unlock) until SIGTERM or SIGINT')
    .addOption(
      new Option('--port <port>', 'TCP port (default 8080; 0 picks a free one)').env('SPLINTER_API_PORT'),
    )
    .addOption(
      new Option('--host <host>', 'address to listen on (default 127.0.0.1)').env('SPLINTER_API_HOST'),
    )
    .addOption(
      new Option('--rate-limit <n>', 'requests per second per launcher token, on average (default 50)').env(
        'SPLINTER_API_RATE_LIMIT',
      ),
    )
    .addOption(
      new Option('--burst <n>', 'requests a token may make at once (default 100)').env('SPLINTER_API_BURST'),
    )
    .addOption(
      new Option(
        '--log-level <level>',
        'fatal, error, warn, info, debug, trace or silent (default info)',
      ).env('SPLINTER_API_LOG_LEVEL'),
    )
    .addOption(
      new Option(
        '--failure-rate <n>',
        'failed authentications per second per client address and per token id, on average (default 1)',
      ).env('SPLINTER_API_FAILURE_RATE'),
    )
    .addOption(
      new Option(
        '--failure-burst <n>',
        'failed authentications at once per address and per token id before 429 (default 20)',
      ).env('SPLINTER_API_FAILURE_BURST'),
    )
    .addOption(
      new Option(
        '--trust-proxy <value>',
        'take the client address from X-Forwarded-For when the peer is one of these comma-separated addresses, CIDR ranges, loopback, linklocal or uniquelocal; true trusts any peer (default false)',
      ).env('SPLINTER_API_TRUST_PROXY'),
    )
    .addOption(
      new Option(
        '--listen-heartbeat <ms>',
        'heartbeat interval of the LISTEN connection; one not back in time means not ready (default 3000)',
      ).env('SPLINTER_API_LISTEN_HEARTBEAT'),
    )
    .addOption(
      new Option(
        '--request-timeout <ms>',
        "time for a request's headers and body to arrive; a slower one gets 408 and is closed (default 10000)",
      ).env('SPLINTER_API_REQUEST_TIMEOUT'),
    )
    .addOption(
      new Option(
        '--connection-timeout <ms>',
        'a connection with no byte either way for this long during a request is destroyed (default 30000)',
      ).env('SPLINTER_API_CONNECTION_TIMEOUT'),
    )
    .addOption(
      new Option(
        '--keep-alive-timeout <ms>',
        'an idle keep-alive connection is closed after this long; keep it above your load balancer idle timeout (default 72000)',
      ).env('SPLINTER_API_KEEP_ALIVE_TIMEOUT'),
    )
    .addOption(
      new Option('--body-limit <bytes>', 'largest request body accepted; 413 beyond (default 16384)').env(
        'SPLINTER_API_BODY_LIMIT',
      ),
    )
    .addOption(
      new Option(
        '--view-max-age <s>',
        'seconds a realm view may be reused: its Cache-Control max-age and how long one database read of it is served (default 2; 0 reads every time)',
      ).env('SPLINTER_API_VIEW_MAX_AGE'),
    )
    .addOption(
      new Option(
        '--view-cache <c>',
        'private (default) or public: whether a shared cache (CDN, ingress) may keep the realm view',
      ).env('SPLINTER_API_VIEW_CACHE'),
    )
    .addOption(
      new Option(
        '--jwt-jwks-url <url>',
        "accept players' JWTs signed by the keys published at this JWKS URL (the studio's identity provider)",
      ).env('SPLINTER_API_JWT_JWKS_URL'),
    )
    .addOption(
      new Option(
        '--jwt-public-key <file>',
        "accept players' JWTs signed by the public key in this PEM file (instead of a JWKS)",
      ).env('SPLINTER_API_JWT_PUBLIC_KEY'),
    )
    .addOption(
      new Option('--jwt-issuer <iss>', "the iss players' JWTs must carry (required with JWTs)").env(
        'SPLINTER_API_JWT_ISSUER',
      ),
    )
    .addOption(
      new Option('--jwt-audience <aud>', "the aud players' JWTs must carry (required with JWTs)").env(
        'SPLINTER_API_JWT_AUDIENCE',
      ),
    )
    .addOption(
      new Option(
        '--jwt-realm-claim <name>',
        "the claim naming the player's realm, which must be the realm asked for (default realm)",
      ).env('SPLINTER_API_JWT_REALM_CLAIM'),
    )
    .addOption(
      new Option(
        '--jwt-clock-tolerance <s>',
        'seconds of clock skew forgiven on exp and nbf (default 30)',
      ).env('SPLINTER_API_JWT_CLOCK_TOLERANCE'),
    )
    .addOption(
      new Option(
        '--jwt-algorithms <list>',
        'accepted signature algorithms, comma-separated (default every RS, PS, ES and EdDSA one; never HS or none)',
      ).env('SPLINTER_API_JWT_ALGORITHMS'),
    )
    .addOption(
      new Option(
        '--jwks-timeout <ms>',
        'time allowed for one JWKS fetch (default 5000; the JWKS may be at most 256 KiB)',
      ).env('SPLINTER_API_JWKS_TIMEOUT'),
    )
    .addOption(
      new Option(
        '--redis-url <url>',
        'keep rate and failure limits in this Redis, shared by every replica (default: in this process)',
      ).env('SPLINTER_API_REDIS_URL'),
    )
    .addOption(
      new Option('--redis-prefix <prefix>', 'prefix of every Redis key (default splinter:api:)').env(
        'SPLINTER_API_REDIS_PREFIX',
      ),
    )
    .addOption(
      new Option(
        '--metrics-port <port>',
        'serve /metrics on this port instead of the public one, where it is then absent (default: the public port)',
      ).env('SPLINTER_API_METRICS_PORT'),
    )
    .action(async (flags: ApiFlags) => {
      const { serveUntilSignalled } = await import('@splintertree/api');
      await serveUntilSignalled(loadSettings(), flags);
    });
}

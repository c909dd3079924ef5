import { createHash } from 'node:crypto';
import { patchIdFrom, type RealmView, type Settings } from '@splintertree/core';
import { isSplinterError, SplinterError } from '@splintertree/errors';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { z } from 'zod';
import { AuthFailures } from './auth-failures.js';
import { type ApiConfig, type ApiFlags, apiConfig } from './config.js';
import { matchesIfNoneMatch } from './etag.js';
import { LauncherService, type Principal } from './launcher-service.js';
import { type Buckets, type LimitStore, memoryLimitStore, redisLimitStore } from './limit-store.js';
import { type ApiMetrics, createMetrics } from './metrics.js';
import { PlayerTokens } from './player-tokens.js';
import { isAuthFailure, problemFor } from './problems.js';
import { registerReleaseRoutes } from './release-routes.js';

const realmParams = z.object({ realm: z.string() });
const patchParams = z.object({ id: z.string() });

export interface RunningApi {
  app: FastifyInstance;
  launcher: LauncherService;
  /** `http://host:port`, with the port actually bound. */
  url: string;
  /** Where /metrics is served: `url`, or its own port with --metrics-port. */
  metricsUrl: string;
  close(): Promise<void>;
}

/** Opens the launcher over the database, builds the server and listens; config is validated first. */
export async function startApi(settings: Settings, flags: ApiFlags): Promise<RunningApi> {
  const config = await apiConfig(flags, settings);
  const app = Fastify({
    logger: { level: config.logLevel, redact: ['req.headers.authorization'] },
    // One log line per request, written by the onResponse hook, instead of fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    trustProxy: config.trustProxy,
    bodyLimit: config.bodyLimit,
    connectionTimeout: config.connectionTimeout,
    keepAliveTimeout: config.keepAliveTimeout,
    requestTimeout: config.requestTimeout,
    http: {
      // Given at creation so that Node also caps the headers timeout (60 s) at the request timeout.
      requestTimeout: config.requestTimeout,
      // Node enforces both only when it checks its connections (every 30 s by default): often
      // enough here that a timeout holds within a quarter of itself, or a second.
      connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(config.requestTimeout / 4))),
    },
  });
  let launcher: LauncherService;
  try {
    launcher = await LauncherService.open({
      settings,
      heartbeatMs: config.listenHeartbeat,
      viewTtlMs: config.viewMaxAge * 1000,
    });
    launcher.on('listener', (state) =>
      state.listening
        ? app.log.info('listening for head changes again')
        : app.log.error(
            { err: state.error },
            'lost the LISTEN connection: serving from the database until it is back',
          ),
    );
  } catch (error) {
    await app.close();
    throw error;
  }
  const metrics = createMetrics(launcher);
  let players: PlayerTokens | undefined;
  let store: LimitStore;
  try {
    if (config.jwt) players = await PlayerTokens.open(config.jwt);
    let lastWarning = 0;
    store = config.redisUrl
      ? await redisLimitStore({
          url: config.redisUrl,
          prefix: config.redisPrefix,
          onError: (error) => {
            metrics.limitStoreErrors.inc();
            if (performance.now() - lastWarning < 10_000) return;
            lastWarning = performance.now();
            app.log.warn(
              { err: error },
              'Redis did not answer a limit check: requests pass unlimited meanwhile',
            );
          },
        })
      : memoryLimitStore();
  } catch (error) {
    await launcher.close();
    await app.close();
    throw error;
  }
  const limiter = store.buckets('rate', config.rateLimit, config.burst);
  const failures = new AuthFailures(store.buckets('fail', config.failureRate, config.failureBurst));
  app.addHook('onClose', async () => {
    limiter.close();
    failures.close();
    await store.close();
    await launcher.close();
  });
  registerRoutes(app, launcher, players, { limiter, failures }, metrics, config);
  const metricsApp = config.metricsPort === undefined ? undefined : metricsServer(metrics);
  if (metricsApp) app.addHook('onClose', async () => void (await metricsApp.close()));
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await app.close();
    throw cannotListen(config.host, config.port, error);
  }
  try {
    await metricsApp?.listen({ host: config.host, port: config.metricsPort });
  } catch (error) {
    await app.close();
    throw cannotListen(config.host, config.metricsPort!, error);
  }
  const url = boundUrl(app, config.host);
  const metricsUrl = metricsApp ? boundUrl(metricsApp, config.host) : url;
  app.log.info(
    {
      url,
      metricsUrl,
      rateLimit: config.rateLimit,
      burst: config.burst,
      failureRate: config.failureRate,
      failureBurst: config.failureBurst,
      trustProxy: config.trustProxy,
      limits: config.redisUrl ? 'redis' : 'memory',
      playerJwts: config.jwt ? (config.jwt.jwksUrl ?? config.jwt.publicKeyFile) : false,
    },
    'launcher API listening',
  );
  return { app, launcher, url, metricsUrl, close: () => app.close() };
}

/** `splinter serve`: runs until SIGTERM or SIGINT, then stops taking requests, finishes those in flight and exits. */
export async function serveUntilSignalled(settings: Settings, flags: ApiFlags): Promise<void> {
  const api = await startApi(settings, flags);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        api.app.log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      api.app.log.info({ signal }, 'shutting down: finishing requests in flight');
      const force = setTimeout(() => {
        api.app.log.error('requests still in flight after 10 s: exiting');
        process.exit(1);
      }, 10_000);
      force.unref();
      api.close().then(
        () => {
          api.app.log.info('stopped');
          resolve();
        },
        (error: unknown) => {
          api.app.log.error({ err: error }, 'shutdown failed');
          resolve();
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

function registerRoutes(
  app: FastifyInstance,
  launcher: LauncherService,
  players: PlayerTokens | undefined,
  limits: { limiter: Buckets; failures: AuthFailures },
  metrics: ApiMetrics,
  config: ApiConfig,
): void {
  /**
   * Authenticates the bearer token (a realm token, or a player's JWT when JWTs are configured) and
   * charges the request to the player or token. A failure is charged to the client address and to
   * the token id or JWT subject it named, and past their budget answered 429 instead of its own code;
   * a valid token is always authenticated, whatever failed before it.
   */
  const guard = async (request: FastifyRequest): Promise<Principal> => {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    const isJwt = players !== undefined && token !== undefined && PlayerTokens.looksLikeJwt(token);
    let principal: Principal;
    try {
      if (isJwt) {
        const player = await players.verify(token);
        principal = { player: player.id, realm: player.realm };
      } else {
        principal = await launcher.authenticate(token);
      }
    } catch (error) {
      if (!isSplinterError(error) || !isAuthFailure(error.code)) throw error;
      const tokenId = error.details?.tokenId;
      const named = isJwt
        ? PlayerTokens.claimedSubject(token)
        : typeof tokenId === 'string'
          ? tokenId
          : undefined;
      const wait = await limits.failures.charge(
        request.ip,
        named === undefined ? undefined : `${isJwt ? 'player' : 'token'}:${named}`,
      );
      metrics.authFailures.inc({ throttled: String(wait > 0) });
      if (wait > 0) {
        throw rateLimited(wait, 'too many failed authentications from this address or for this token');
      }
      throw error;
    }
    const wait = await limits.limiter.take(principalKey(principal));
    if (wait > 0) throw rateLimited(wait, 'too many requests');
    return principal;
  };

  app.setErrorHandler((error, request, reply) => {
    // Fastify's own 4xx errors (a bad body, one too large) keep their status under INVALID_ARGUMENT.
    const statusCode = (error as { statusCode?: unknown }).statusCode;
    const clientStatus =
      !isSplinterError(error) && typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500
        ? statusCode
        : undefined;
    const known =
      clientStatus === undefined ? error : new SplinterError('INVALID_ARGUMENT', (error as Error).message);
    const problem = problemFor(known, request.url, clientStatus);
    if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
    if (problem.status === 401) reply.header('www-authenticate', 'Bearer');
    const retryAfter = isSplinterError(error) ? error.details?.retryAfter : undefined;
    if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
    return reply.code(problem.status).type('application/problem+json').send(problem);
  });
  app.setNotFoundHandler((request, reply) => {
    const problem = problemFor(
      new SplinterError('NOT_FOUND', `no route ${request.method} ${request.url}`),
      request.url,
    );
    return reply.code(404).type('application/problem+json').send(problem);
  });
  app.addHook('onRequest', async (request, reply) => {
    if (request.url.startsWith('/launcher/')) reply.header('cache-control', 'no-store');
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    metrics.duration.observe({ route }, reply.elapsedTime / 1000);
    request.log.info(
      {
        method: request.method,
        url: request.url,
        ip: request.ip,
        status: reply.statusCode,
        ms: Number(reply.elapsedTime.toFixed(2)),
      },
      'request',
    );
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const state = await launcher.ready();
    return reply.code(state.ready ? 200 : 503).send(state);
  });
  if (config.metricsPort === undefined) {
    app.get('/metrics', async (_request, reply) =>
      reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
  }

  const viewCacheControl =
    config.viewMaxAge > 0
      ? `${config.viewCache}, max-age=${config.viewMaxAge}`
      : `${config.viewCache}, no-cache`;
  app.get('/launcher/realms/:realm', async (request, reply) => {
    const principal = await guard(request);
    const { realm } = realmParams.parse(request.params);
    const { body, etag } = tagged(await launcher.realm(realm, principal));
    reply.header('cache-control', viewCacheControl).header('etag', etag);
    if (config.viewCache === 'public') reply.header('vary', 'authorization');
    if (matchesIfNoneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send();
    return reply.type('application/json; charset=utf-8').send(body);
  });

  registerReleaseRoutes(app, launcher, guard);

  app.post('/launcher/patches/:id/unlock', async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      const principal = await guard(request);
      const id = patchIdFrom(patchParams.parse(request.params).id);
      const grant = await launcher.unlock(id, principal);
      metrics.unlocks.inc({ outcome: 'granted' });
      request.log.info(
        { patchId: id, keyId: grant.keyId, tokenId: principal.tokenId, player: principal.player },
        'key released',
      );
      return reply.send(grant);
    } catch (error) {
      metrics.unlocks.inc({ outcome: isSplinterError(error) ? error.code : 'INTERNAL' });
      throw error;
    }
  });
}

/** /metrics alone, on --metrics-port, for Prometheus to scrape from inside the cluster only. */
function metricsServer(metrics: ApiMetrics): FastifyInstance {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  app.get('/metrics', async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .type('application/problem+json')
      .send(
        problemFor(new SplinterError('NOT_FOUND', `no route ${request.method} ${request.url}`), request.url),
      ),
  );
  return app;
}

function cannotListen(host: string, port: number, error: unknown): SplinterError {
  return new SplinterError(
    'INVALID_CONFIG',
    `cannot listen on ${host}:${port}: ${(error as Error).message}`,
    {
      cause: error,
    },
  );
}

function boundUrl(app: FastifyInstance, host: string): string {
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** A view's JSON body and strong ETag, worked out once per view object (the server reuses views). */
const taggedViews = new WeakMap<RealmView, { body: string; etag: string }>();
function tagged(view: RealmView): { body: string; etag: string } {
  let entry = taggedViews.get(view);
  if (!entry) {
    const body = JSON.stringify(view);
    entry = { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
    taggedViews.set(view, entry);
  }
  return entry;
}

/** The bucket a request is charged to: the player (JWT issuer and subject) or the realm token. */
function principalKey(principal: Principal): string {
  return principal.player !== undefined ? `player:${principal.player}` : `token:${principal.tokenId}`;
}

function rateLimited(retryAfter: number, what: string): SplinterError {
  return new SplinterError('RATE_LIMITED', `${what}: retry in ${retryAfter} s`, {
    details: { retryAfter },
  });
}

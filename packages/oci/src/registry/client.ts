import { SplinterError } from '@splintertree/errors';
import type { Dispatcher } from 'undici';
import { MAX_TOKEN_RESPONSE_BYTES, readBodyLimited } from '../read-limited.js';
import type { Credential, CredentialSource } from './credentials.js';
import {
  DEFAULT_RETRY_POLICY,
  delayFor,
  isRetryableNetworkError,
  isRetryableStatus,
  type RetryPolicy,
  sleep,
} from './retry.js';
import { createRegistryDispatcher, type TransportOptions, USER_AGENT } from './transport.js';

export interface RegistryClientOptions {
  registry: string;
  plainHttp?: boolean;
  credentials?: CredentialSource;
  retry?: Partial<RetryPolicy>;
  /** CA file, --insecure and proxies, for the dispatcher the client makes (not with `dispatcher`). */
  transport?: TransportOptions;
  dispatcher?: Dispatcher;
  /** Default `splinter/<version>`. */
  userAgent?: string;
  /** Longest wait to connect, for response headers and between body bytes (default 120 s; 10 s to connect). */
  timeoutMs?: number | undefined;
}

export interface RegistryRequest {
  method: Dispatcher.HttpMethod;
  /** A path on the registry (`/v2/...`) or an absolute URL (upload locations). */
  url: string;
  headers?: Record<string, string>;
  /** A function so that a retry can make the body anew; streams that cannot be re-made are sent once. */
  body?: () => Dispatcher.DispatchOptions['body'];
  replayable?: boolean;
  /** Token scopes, e.g. `repository:game/eu-1:pull,push`. */
  scopes: string[];
}

export interface RegistryResponse {
  status: number;
  headers: Record<string, string | undefined>;
  body: Dispatcher.ResponseData['body'];
  url: URL;
  /** Which credential the request carried (`auth file PATH`, a helper, anonymous), for 401 messages. */
  credentialSource?: string;
}

type Challenge = { scheme: 'basic' } | { scheme: 'bearer'; realm: string; service: string | undefined };

/** Counts of what crossed the wire, for tests and benchmarks. */
export interface RegistryStats {
  requests: number;
  blobUploads: number;
  blobMounts: number;
  chunks: number;
  retries: number;
  resumes: number;
  /** Fresh redirects asked of the registry after a storage URL refused (an expired presigned URL). */
  redirectRenewals: number;
  tokenRequests: number;
}

/**
 * HTTP to one registry on undici: keep-alive connections, the distribution auth flows (anonymous,
 * Basic, Bearer tokens cached per scope), and one retry policy for resets, 5xx and 429.
 *
 * Credentials follow one origin rule: the registry's credentials and its tokens are attached only to
 * requests to the registry's own origin (scheme, host and port), and only a 401 from that origin is
 * answered with a login. A storage host a blob redirects to, or the same host over plain http, gets
 * neither. The token service the registry's own challenge names may live on another host (Docker Hub's
 * does) and gets the login, but never over plain http when the registry is https.
 */
export class RegistryClient {
  readonly registry: string;
  /** `https://host[:port]` (or http with plainHttp), normalised as URL.origin is. */
  readonly origin: string;
  readonly stats: RegistryStats = {
    requests: 0,
    blobUploads: 0,
    blobMounts: 0,
    chunks: 0,
    retries: 0,
    resumes: 0,
    redirectRenewals: 0,
    tokenRequests: 0,
  };
  readonly retry: RetryPolicy;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly credentials: CredentialSource | undefined;
  private credential: Promise<Credential | undefined> | undefined;
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, { token: string; expiresAt: number }>();
  private readonly userAgent: string;

  constructor(options: RegistryClientOptions) {
    this.registry = options.registry;
    this.userAgent = options.userAgent ?? USER_AGENT;
    this.origin = new URL(`${options.plainHttp ? 'http' : 'https'}://${options.registry}`).origin;
    this.credentials = options.credentials;
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ?? createRegistryDispatcher({ ...options.transport, timeoutMs: options.timeoutMs });
  }

  /**
   * `GET /v2/` with the credentials, as `docker login` and `oras login` check a login before saving
   * it: resolves when the registry accepts, throws REGISTRY_UNAUTHORIZED (naming the source) when not.
   */
  async ping(): Promise<void> {
    const response = await this.send({ method: 'GET', url: '/v2/', scopes: [], replayable: true });
    await response.body.dump();
    if (response.status === 200) return;
    if (response.status === 401) {
      throw new SplinterError(
        'REGISTRY_UNAUTHORIZED',
        `${this.registry} refused the login (401; ${response.credentialSource ?? 'anonymous'})`,
      );
    }
    throw new SplinterError('REGISTRY_ERROR', `${this.registry}: GET /v2/ answered ${response.status}`, {
      details: { status: response.status },
    });
  }

  /** Where the credential the client uses comes from (never the secret). */
  async credentialSource(): Promise<string> {
    return (await this.loadCredential())?.source ?? 'anonymous';
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  /** Sends a request, authenticating on a 401 challenge and retrying transient faults within the policy. */
  async send(request: RegistryRequest): Promise<RegistryResponse> {
    const started = Date.now();
    let authRetried = false;
    let lastCause = '';
    for (let attempt = 1; ; attempt++) {
      let response: RegistryResponse | undefined;
      try {
        response = await this.once(request);
      } catch (error) {
        if (error instanceof SplinterError) throw error;
        if (!isRetryableNetworkError(error) || !request.replayable) {
          throw new SplinterError(
            'REGISTRY_UNREACHABLE',
            `${request.method} ${this.describe(request.url)}: ${networkMessage(error)}`,
            { cause: error, details: networkDetails(error) },
          );
        }
        lastCause = (error as Error).message || String((error as { code?: string }).code);
      }
      if (response) {
        if (response.status === 401 && !authRetried && this.isRegistryOrigin(response.url)) {
          await response.body.dump();
          authRetried = true;
          await this.authenticate(response, request.scopes);
          attempt -= 1;
          continue;
        }
        if (!isRetryableStatus(response.status) || !request.replayable) return response;
        lastCause = `HTTP ${response.status}`;
        await response.body.dump().catch(() => undefined);
      }
      const delay = delayFor(this.retry, attempt, response?.headers['retry-after']);
      if (attempt >= this.retry.maxAttempts || Date.now() - started + delay > this.retry.maxElapsedMs) {
        throw new SplinterError(
          'RETRIES_EXHAUSTED',
          `${request.method} ${this.describe(request.url)}: ${lastCause} after ${attempt} attempts`,
          { details: { attempts: attempt, lastCause } },
        );
      }
      this.stats.retries += 1;
      await sleep(delay);
    }
  }

  private describe(url: string): string {
    return url.startsWith('/') ? `${this.origin}${url}` : url;
  }

  private async once(request: RegistryRequest): Promise<RegistryResponse> {
    const url = new URL(request.url, this.origin);
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...request.headers };
    let credentialSource: string | undefined;
    if (this.isRegistryOrigin(url)) {
      const authorization = await this.authorizationFor(request.scopes);
      if (authorization) headers.authorization = authorization;
      if (this.challenge) credentialSource = await this.credentialSource();
    }
    this.stats.requests += 1;
    const response = await this.dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: request.method,
      headers,
      body: request.body?.() ?? null,
    });
    const flat: Record<string, string | undefined> = {};
    for (const [key, value] of Object.entries(response.headers))
      flat[key] = Array.isArray(value) ? value.join(', ') : value;
    return {
      status: response.statusCode,
      headers: flat,
      body: response.body,
      url,
      ...(credentialSource ? { credentialSource } : {}),
    };
  }

  private isRegistryOrigin(url: URL): boolean {
    return url.origin === this.origin;
  }

  private async authorizationFor(scopes: string[]): Promise<string | undefined> {
    if (!this.challenge) return undefined;
    if (this.challenge.scheme === 'basic') {
      const credential = await this.loadCredential();
      if (credential?.username === undefined) return undefined;
      return `Basic ${Buffer.from(`${credential.username}:${credential.password ?? ''}`).toString('base64')}`;
    }
    const cached = this.tokens.get(scopeKey(scopes));
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    return `Bearer ${await this.fetchToken(this.challenge, scopes)}`;
  }

  private loadCredential(): Promise<Credential | undefined> {
    this.credential ??= this.credentials ? this.credentials(this.registry) : Promise.resolve(undefined);
    return this.credential;
  }

  private async authenticate(response: RegistryResponse, scopes: string[]): Promise<void> {
    const header = response.headers['www-authenticate'];
    const challenge = header ? parseChallenge(header) : undefined;
    if (!challenge) {
      throw new SplinterError(
        'REGISTRY_UNAUTHORIZED',
        `${this.registry} refused the request (401) without a usable challenge`,
      );
    }
    this.challenge = challenge;
    if (challenge.scheme === 'basic') {
      const credential = await this.loadCredential();
      if (credential?.username === undefined) {
        const why = credential?.identityToken !== undefined ? ', which an identity token cannot answer' : '';
        throw new SplinterError(
          'REGISTRY_UNAUTHORIZED',
          `${this.registry} needs a login (Basic auth${why}; ${credential?.source ?? 'anonymous'})`,
          { details: { reason: 'login-required', registry: this.registry } },
        );
      }
      return;
    }
    this.tokens.delete(scopeKey(scopes));
    await this.fetchToken(challenge, scopes);
  }

  private async fetchToken(
    challenge: Extract<Challenge, { scheme: 'bearer' }>,
    scopes: string[],
  ): Promise<string> {
    const url = new URL(challenge.realm);
    const credential = await this.loadCredential();
    const source = credential?.source ?? 'anonymous';
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    const secretBearing = credential?.username !== undefined || credential?.identityToken !== undefined;
    if (secretBearing && url.protocol !== 'https:' && this.origin.startsWith('https:')) {
      throw new SplinterError(
        'REGISTRY_UNAUTHORIZED',
        `${this.registry} names token service ${url.origin}, which is plain http: the login is not sent there`,
        { details: { realm: url.origin } },
      );
    }
    let method: 'GET' | 'POST' = 'GET';
    let form: string | undefined;
    if (credential?.identityToken !== undefined) {
      // An identity token is an OAuth2 refresh token: docker and oras POST it to the realm
      // (distribution's token spec, "OAuth2 token"), with the scopes space-separated.
      method = 'POST';
      const params = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: credential.identityToken,
      });
      if (challenge.service) params.set('service', challenge.service);
      if (scopes.length > 0) params.set('scope', scopes.join(' '));
      params.set('client_id', 'splinter');
      form = params.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (challenge.service) url.searchParams.set('service', challenge.service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      if (credential?.username !== undefined) {
        headers.authorization = `Basic ${Buffer.from(`${credential.username}:${credential.password ?? ''}`).toString('base64')}`;
      }
    }
    this.stats.tokenRequests += 1;
    let response: Dispatcher.ResponseData;
    try {
      response = await this.dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method,
        headers,
        body: form ?? null,
      });
    } catch (error) {
      throw new SplinterError(
        'REGISTRY_UNREACHABLE',
        `token service ${url.origin}: ${networkMessage(error)}`,
        { cause: error, details: networkDetails(error) },
      );
    }
    if (response.statusCode === 401 || response.statusCode === 403) {
      await response.body.dump();
      throw new SplinterError(
        'REGISTRY_UNAUTHORIZED',
        `token service for ${this.registry} refused the credentials (${response.statusCode}; ${source})`,
        { details: { credentialSource: source } },
      );
    }
    if (response.statusCode !== 200) {
      await response.body.dump();
      throw new SplinterError(
        'REGISTRY_ERROR',
        `token service for ${this.registry} answered ${response.statusCode}`,
      );
    }
    const text = await readBodyLimited(
      response.body,
      MAX_TOKEN_RESPONSE_BYTES,
      `token response from ${url.origin}`,
    );
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse(text.toString());
    } catch {
      throw new SplinterError('REGISTRY_ERROR', `token service for ${this.registry} answered no JSON`);
    }
    const token = body.access_token ?? body.token;
    if (!token)
      throw new SplinterError('REGISTRY_ERROR', `token service for ${this.registry} returned no token`);
    const lifetime = (body.expires_in ?? 60) * 1000;
    this.tokens.set(scopeKey(scopes), { token, expiresAt: Date.now() + Math.max(0, lifetime - 5_000) });
    return token;
  }
}

const TLS_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|HOSTNAME_MISMATCH/;

/** A network error's message, saying so when it is a certificate the client does not trust. */
function networkMessage(error: unknown): string {
  const message = (error as Error).message || String((error as { code?: string }).code);
  return isUntrustedCertificate(error)
    ? `${message} (TLS: the registry's certificate is not trusted)`
    : message;
}

/** `reason: 'tls-untrusted'` for a certificate the client does not trust: apps say how to trust it. */
function networkDetails(error: unknown): Record<string, unknown> | undefined {
  return isUntrustedCertificate(error) ? { reason: 'tls-untrusted' } : undefined;
}

function isUntrustedCertificate(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; current && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_ERROR.test(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ');
}

/** Parses `Basic realm="x"` or `Bearer realm="...",service="...",scope="..."`. */
export function parseChallenge(header: string): Challenge | undefined {
  const match = /^\s*(\w+)\s*(.*)$/.exec(header);
  if (!match) return undefined;
  const scheme = match[1]!.toLowerCase();
  if (scheme === 'basic') return { scheme: 'basic' };
  if (scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const part of match[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[part[1]!.toLowerCase()] = part[2]!;
  if (!params.realm) return undefined;
  return { scheme: 'bearer', realm: params.realm, service: params.service };
}

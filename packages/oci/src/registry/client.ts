import { SplinterError } from '@splintertree/errors';
import type { Dispatcher } from 'undici';
import { RegistryAuth } from './auth.js';
import type { CredentialSource } from './credentials.js';
import { abortedError, networkDetails, networkMessage } from './failure.js';
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
  /** Cancels the request, a retry's wait and the response body: then it fails with abortedError. */
  signal?: AbortSignal | undefined;
}

export interface RegistryResponse {
  status: number;
  headers: Record<string, string | undefined>;
  body: Dispatcher.ResponseData['body'];
  url: URL;
  /** Which credential the request carried (`auth file PATH`, a helper, anonymous), for 401 messages. */
  credentialSource?: string;
}

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
 * Basic, Bearer tokens cached per scope: auth.ts), and one retry policy for resets, 5xx and 429.
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
  private readonly auth: RegistryAuth;
  private readonly userAgent: string;

  constructor(options: RegistryClientOptions) {
    this.registry = options.registry;
    this.userAgent = options.userAgent ?? USER_AGENT;
    this.origin = new URL(`${options.plainHttp ? 'http' : 'https'}://${options.registry}`).origin;
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ?? createRegistryDispatcher({ ...options.transport, timeoutMs: options.timeoutMs });
    this.auth = new RegistryAuth({
      registry: this.registry,
      origin: this.origin,
      credentials: options.credentials,
      dispatcher: this.dispatcher,
      userAgent: this.userAgent,
      stats: this.stats,
    });
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
  credentialSource(): Promise<string> {
    return this.auth.credentialSource();
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  /** Sends a request, authenticating on a 401 challenge and retrying transient faults within the policy. */
  async send(request: RegistryRequest): Promise<RegistryResponse> {
    const started = Date.now();
    let authRetried = false;
    let lastCause = '';
    const { signal } = request;
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw abortedError(signal, `${request.method} ${this.describe(request.url)}`);
      let response: RegistryResponse | undefined;
      try {
        response = await this.once(request);
      } catch (error) {
        if (signal?.aborted) throw abortedError(signal, `${request.method} ${this.describe(request.url)}`);
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
          await this.auth.authenticate(response, request.scopes, signal);
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
      try {
        await sleep(delay, undefined, signal ? { signal } : undefined);
      } catch (error) {
        if (signal?.aborted) throw abortedError(signal, `${request.method} ${this.describe(request.url)}`);
        throw error;
      }
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
      const authorization = await this.auth.authorizationFor(request.scopes, request.signal);
      if (authorization) headers.authorization = authorization;
      if (this.auth.challenged) credentialSource = await this.credentialSource();
    }
    this.stats.requests += 1;
    const response = await this.dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: request.method,
      headers,
      body: request.body?.() ?? null,
      ...(request.signal ? { signal: request.signal } : {}),
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
}

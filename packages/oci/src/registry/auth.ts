import { SplinterError } from '@splintertree/errors';
import type { Dispatcher } from 'undici';
import { MAX_TOKEN_RESPONSE_BYTES, readBodyLimited } from '../read-limited.js';
import type { RegistryResponse, RegistryStats } from './client.js';
import type { Credential, CredentialSource } from './credentials.js';
import { abortedError, networkDetails, networkMessage } from './failure.js';

type Challenge = { scheme: 'basic' } | { scheme: 'bearer'; realm: string; service: string | undefined };

export interface RegistryAuthOptions {
  registry: string;
  /** The registry's origin: a token service on plain http never gets a login when this is https. */
  origin: string;
  credentials: CredentialSource | undefined;
  /** The client's dispatcher, for token requests. */
  dispatcher: Dispatcher;
  userAgent: string;
  stats: RegistryStats;
}

/**
 * The distribution auth flows of one registry: the challenge its 401 names (Basic or Bearer), the
 * credential (loaded once, from the source given), and Bearer tokens cached per scope set. Tokens
 * come from the realm the challenge names: GET with Basic auth, or POST of an identity (refresh) token.
 */
export class RegistryAuth {
  private readonly registry: string;
  private readonly origin: string;
  private readonly credentials: CredentialSource | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly userAgent: string;
  private readonly stats: RegistryStats;
  private credential: Promise<Credential | undefined> | undefined;
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, { token: string; expiresAt: number }>();

  constructor(options: RegistryAuthOptions) {
    this.registry = options.registry;
    this.origin = options.origin;
    this.credentials = options.credentials;
    this.dispatcher = options.dispatcher;
    this.userAgent = options.userAgent;
    this.stats = options.stats;
  }

  /** True once the registry has challenged: requests then carry a credential, and name its source. */
  get challenged(): boolean {
    return this.challenge !== undefined;
  }

  /** Where the credential comes from (never the secret). */
  async credentialSource(): Promise<string> {
    return (await this.loadCredential())?.source ?? 'anonymous';
  }

  /** The Authorization header for a request needing `scopes`, once a challenge named the scheme. */
  async authorizationFor(scopes: string[], signal?: AbortSignal): Promise<string | undefined> {
    if (!this.challenge) return undefined;
    if (this.challenge.scheme === 'basic') {
      const credential = await this.loadCredential();
      if (credential?.username === undefined) return undefined;
      return `Basic ${Buffer.from(`${credential.username}:${credential.password ?? ''}`).toString('base64')}`;
    }
    const cached = this.tokens.get(scopeKey(scopes));
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    return `Bearer ${await this.fetchToken(this.challenge, scopes, signal)}`;
  }

  private loadCredential(): Promise<Credential | undefined> {
    this.credential ??= this.credentials ? this.credentials(this.registry) : Promise.resolve(undefined);
    return this.credential;
  }

  /** Answers a 401 from the registry: takes its challenge, and fetches a token for `scopes` (Bearer). */
  async authenticate(response: RegistryResponse, scopes: string[], signal?: AbortSignal): Promise<void> {
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
    await this.fetchToken(challenge, scopes, signal);
  }

  private async fetchToken(
    challenge: Extract<Challenge, { scheme: 'bearer' }>,
    scopes: string[],
    signal: AbortSignal | undefined,
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
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (signal?.aborted) throw abortedError(signal, `token service ${url.origin}`);
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

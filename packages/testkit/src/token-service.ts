import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { selfSignedCertificate } from './certificate.js';

export interface TokenService {
  url: string;
  issuer: string;
  certificatePath: string;
  /** Token requests answered so far (to assert that clients cache tokens). */
  requests: number;
  /** Scopes asked for, in order. */
  scopes: string[];
  /** How each token was asked for, in order: `basic` (GET with a login), `refresh_token` or `password` (POST). */
  grants: string[];
  /** The User-Agent of each request, in order. */
  userAgents: Array<string | undefined>;
  /** An identity (refresh) token for `user`, as a token service hands one to `docker login`. */
  issueRefreshToken(user: string): string;
  stop(): Promise<void>;
}

/**
 * A small Docker token service for CNCF Distribution's `auth.token`: checks Basic credentials, grants
 * the requested repository scopes and answers ES256 JWTs whose `x5c` certificate is the registry's
 * root bundle (a self-signed certificate, see selfSignedCertificate).
 */
export async function startTokenService(options: {
  users: Record<string, string>;
  dir: string;
  service: string;
  /** Serve https with this key and certificate (PEM) instead of plain http. */
  tls?: { key: string; certificate: string };
}): Promise<TokenService> {
  const {
    key: keyPem,
    certificate,
    certificatePath,
  } = selfSignedCertificate({
    dir: options.dir,
    name: 'token',
    commonName: 'splinter-test-token',
  });
  const key = createPrivateKey(keyPem);
  const certificateDer = new X509Certificate(certificate).raw;
  const issuer = 'splinter-test-issuer';
  const state = {
    requests: 0,
    scopes: [] as string[],
    grants: [] as string[],
    userAgents: [] as Array<string | undefined>,
  };
  const refreshTokens = new Map<string, string>();
  const refuse = (response: ServerResponse) =>
    response.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');

  const handler = async (request: IncomingMessage, response: ServerResponse) => {
    state.requests += 1;
    state.userAgents.push(request.headers['user-agent']);
    const url = new URL(request.url ?? '/', 'http://localhost');
    let user: string | undefined;
    let scopes: string[];
    let refreshToken: string | undefined;
    if (request.method === 'POST') {
      // Distribution's "OAuth2 token" flow: a form with grant_type refresh_token or password.
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      const grant = form.get('grant_type') ?? '';
      state.grants.push(grant);
      if (grant === 'refresh_token') {
        user = refreshTokens.get(form.get('refresh_token') ?? '');
        refreshToken = form.get('refresh_token') ?? undefined;
      } else if (grant === 'password') {
        const name = form.get('username') ?? '';
        if (options.users[name] !== undefined && options.users[name] === form.get('password')) user = name;
      }
      scopes = (form.get('scope') ?? '').split(' ').filter((scope) => scope !== '');
    } else {
      const authorization = request.headers.authorization ?? '';
      const decoded = authorization.startsWith('Basic ')
        ? Buffer.from(authorization.slice(6), 'base64').toString()
        : '';
      const colon = decoded.indexOf(':');
      const name = colon >= 0 ? decoded.slice(0, colon) : '';
      if (colon >= 0 && options.users[name] === decoded.slice(colon + 1)) user = name;
      state.grants.push('basic');
      scopes = url.searchParams.getAll('scope');
    }
    if (user === undefined) {
      refuse(response);
      return;
    }
    state.scopes.push(...scopes);
    const access = scopes.flatMap((scope) => {
      const [type, ...rest] = scope.split(':');
      const actions = rest.pop() ?? '';
      return type === 'repository' ? [{ type, name: rest.join(':'), actions: actions.split(',') }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [certificateDer.toString('base64')] };
    const claims = {
      iss: issuer,
      sub: user,
      aud: options.service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const signingInput = `${encode(header)}.${encode(claims)}`;
    const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' }).toString(
      'base64url',
    );
    const token = `${signingInput}.${signature}`;
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: 300,
        issued_at: new Date().toISOString(),
        ...(refreshToken ? { refresh_token: refreshToken } : {}),
      }),
    );
  };
  const listener = (request: IncomingMessage, response: ServerResponse) => {
    handler(request, response).catch(() => response.destroy());
  };
  const server: Server = options.tls
    ? createHttpsServer({ key: options.tls.key, cert: options.tls.certificate }, listener)
    : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    issuer,
    certificatePath,
    get requests() {
      return state.requests;
    },
    get scopes() {
      return state.scopes;
    },
    get grants() {
      return state.grants;
    },
    get userAgents() {
      return state.userAgents;
    },
    issueRefreshToken(user: string) {
      const token = `refresh-${randomUUID()}`;
      refreshTokens.set(token, user);
      return token;
    },
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { selfSignedCertificate } from './certificate.js';

export interface TokenService {
  url: string;
  issuer: string;
  certificatePath: string;
  /** Token requests answered so far (to assert that clients cache tokens). */
  requests: number;
  /** Scopes asked for, in order. */
  scopes: string[];
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
  const state = { requests: 0, scopes: [] as string[] };

  const server: Server = createServer((request, response) => {
    state.requests += 1;
    const url = new URL(request.url ?? '/', 'http://localhost');
    const authorization = request.headers.authorization ?? '';
    const decoded = authorization.startsWith('Basic ')
      ? Buffer.from(authorization.slice(6), 'base64').toString()
      : '';
    const colon = decoded.indexOf(':');
    const user = colon >= 0 ? decoded.slice(0, colon) : '';
    if (colon < 0 || options.users[user] !== decoded.slice(colon + 1)) {
      response.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const scopes = url.searchParams.getAll('scope');
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
      JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    issuer,
    certificatePath,
    get requests() {
      return state.requests;
    },
    get scopes() {
      return state.scopes;
    },
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

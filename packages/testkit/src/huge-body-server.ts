import { createServer, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type HugeBodyRoute = 'error' | 'token' | 'manifest' | 'referrers';

export interface HugeBodyServer {
  /** `127.0.0.1:PORT`: use it as a plain-http registry host. */
  host: string;
  /** Body bytes of each route that the socket took before the client hung up (or the body ended). */
  sent: Record<HugeBodyRoute, number>;
  stop(): Promise<void>;
}

const FILLER = Buffer.alloc(64 * 1024, 'a');

/**
 * A hostile registry on loopback whose answers have bodies of `bytes` bytes, streamed (chunked, no
 * Content-Length) and never held in memory. The repository picks the route:
 * - `huge/error/...`: 400 with an error JSON whose message never seems to end;
 * - `huge/token/...`: 401 with a Bearer challenge whose realm, this server's `/token`, answers 200
 *   with a token JSON of that size;
 * - `huge/manifest/manifests/<ref>`: 200, an image manifest of that size;
 * - `huge/referrers/referrers/<digest>`: 200, an image index of that size.
 */
export async function startHugeBodyServer(options: { bytes: number }): Promise<HugeBodyServer> {
  const sent: Record<HugeBodyRoute, number> = { error: 0, token: 0, manifest: 0, referrers: 0 };
  const sockets = new Set<Socket>();
  let host = '';

  const server = createServer((request, response) => {
    request.resume();
    const path = request.url ?? '/';
    if (path.startsWith('/token')) {
      return void flood(response, 'token', 200, 'application/json', '{"token":"', '"}');
    }
    if (path.startsWith('/v2/huge/error/')) {
      return void flood(
        response,
        'error',
        400,
        'application/json',
        '{"errors":[{"code":"DENIED","message":"',
        '"}]}',
      );
    }
    if (path.startsWith('/v2/huge/token/')) {
      response.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="http://${host}/token",service="huge"`,
      });
      return void response.end('{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}');
    }
    if (path.startsWith('/v2/huge/manifest/manifests/')) {
      return void flood(
        response,
        'manifest',
        200,
        'application/vnd.oci.image.manifest.v1+json',
        '{"schemaVersion":2,"annotations":{"x":"',
        '"}}',
      );
    }
    if (path.startsWith('/v2/huge/referrers/referrers/')) {
      return void flood(
        response,
        'referrers',
        200,
        'application/vnd.oci.image.index.v1+json',
        '{"schemaVersion":2,"manifests":[],"annotations":{"x":"',
        '"}}',
      );
    }
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end('{"errors":[{"code":"NAME_UNKNOWN","message":"no such route"}]}');
  });

  async function flood(
    response: ServerResponse,
    route: HugeBodyRoute,
    status: number,
    contentType: string,
    prefix: string,
    suffix: string,
  ): Promise<void> {
    response.writeHead(status, { 'content-type': contentType });
    const count = (chunk: Buffer) => (error: Error | null | undefined) => {
      if (!error) sent[route] += chunk.byteLength;
    };
    const write = async (chunk: Buffer) => {
      if (response.write(chunk, count(chunk))) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          response.off('drain', done);
          response.off('close', done);
          resolve();
        };
        response.on('drain', done);
        response.on('close', done);
      });
    };
    const head = Buffer.from(prefix);
    const tail = Buffer.from(suffix);
    await write(head);
    let left = options.bytes - head.byteLength - tail.byteLength;
    while (left > 0 && !response.destroyed) {
      const chunk = left >= FILLER.byteLength ? FILLER : FILLER.subarray(0, left);
      left -= chunk.byteLength;
      await write(chunk);
    }
    if (!response.destroyed) response.end(tail, () => count(tail)(null));
  }

  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  host = `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return {
    host,
    sent,
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

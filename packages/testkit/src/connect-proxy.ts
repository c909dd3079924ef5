import { createServer, type IncomingMessage } from 'node:http';
import { type Socket, connect as tcpConnect } from 'node:net';

export interface ConnectProxy {
  /** `http://127.0.0.1:PORT`: what HTTPS_PROXY / HTTP_PROXY name. */
  url: string;
  /** Every CONNECT asked of the proxy, in order, as `host:port` with its answer. */
  log: Array<{ target: string; status: number; userAgent: string | undefined }>;
  stop(): Promise<void>;
}

/**
 * A real HTTP CONNECT proxy (RFC 9110 §9.3.6) on loopback: it opens a TCP tunnel to the asked
 * `host:port` and records each CONNECT. `hosts` maps names to addresses the proxy resolves them to,
 * so a test can use a name that only the proxy knows (a request that bypasses the proxy cannot
 * reach it). Plain `GET http://...` forwarding is refused (405): clients here tunnel.
 */
export async function startConnectProxy(
  options: { hosts?: Record<string, string> } = {},
): Promise<ConnectProxy> {
  const log: ConnectProxy['log'] = [];
  const sockets = new Set<Socket>();
  const server = createServer((request, response) => {
    response.writeHead(405, { 'content-type': 'text/plain' }).end('this proxy only tunnels (CONNECT)\n');
    request.resume();
  });
  server.on('connect', (request: IncomingMessage, client: Socket, head: Buffer) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const target = request.url ?? '';
    const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
    const entry = { target, status: 0, userAgent: request.headers['user-agent'] };
    log.push(entry);
    if (!match) {
      entry.status = 400;
      client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      return;
    }
    const host = options.hosts?.[match[1]!.toLowerCase()] ?? match[1]!;
    const upstream = tcpConnect(Number(match[2]), host);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.once('connect', () => {
      entry.status = 200;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => {
      if (entry.status === 0) {
        entry.status = 502;
        client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      } else {
        client.destroy();
      }
    });
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

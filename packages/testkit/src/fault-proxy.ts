import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';

export type Fault =
  /** Forward the response, but cut the connection after this many body bytes. */
  | { kind: 'reset-after'; bytes: number }
  /** Answer this status without asking the registry (optionally with headers such as Retry-After). */
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Forward, but pause this long between body chunks. */
  | { kind: 'slow'; delayMs: number }
  /** Forward, flipping the bits of the body byte at this offset (a hostile or broken mirror). */
  | { kind: 'corrupt'; offset: number };

export interface FaultRule {
  method?: string;
  path: RegExp;
  fault: Fault;
  /** How many matching requests get the fault (default: every one). */
  times?: number;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`: use it as the registry host. */
  host: string;
  /** Requests seen, as `METHOD path`. */
  log: string[];
  add(rule: FaultRule): void;
  clear(): void;
  stop(): Promise<void>;
}

/**
 * A reverse proxy on loopback in front of a registry that injects faults into matching requests. The
 * Host header is forwarded unchanged, so the registry's absolute upload URLs point back at the proxy.
 */
export async function startFaultProxy(upstreamHost: string): Promise<FaultProxy> {
  const [upstreamName, upstreamPort] = upstreamHost.split(':') as [string, string];
  const rules: Array<FaultRule & { used: number }> = [];
  const log: string[] = [];
  const sockets = new Set<Socket>();

  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const line = `${request.method} ${request.url}`;
    log.push(line);
    const rule = rules.find(
      (r) =>
        (r.method === undefined || r.method === request.method) &&
        r.path.test(request.url ?? '') &&
        r.used < (r.times ?? Number.POSITIVE_INFINITY),
    );
    if (rule) rule.used += 1;
    const fault = rule?.fault;
    if (fault?.kind === 'status') {
      request.resume();
      response.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      response.end('{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}');
      return;
    }
    const upstream = httpRequest(
      {
        host: upstreamName,
        port: Number(upstreamPort),
        method: request.method,
        path: request.url,
        headers: request.headers,
      },
      (upstreamResponse) => {
        response.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
        let sent = 0;
        upstreamResponse.on('data', (data: Buffer) => {
          let chunk = data;
          if (fault?.kind === 'reset-after') {
            const room = fault.bytes - sent;
            if (room <= 0 || chunk.byteLength > room) {
              if (room > 0) response.write(chunk.subarray(0, room));
              upstreamResponse.destroy();
              request.socket.destroy();
              return;
            }
          }
          if (fault?.kind === 'corrupt' && fault.offset >= sent && fault.offset < sent + chunk.byteLength) {
            const copy = Buffer.from(chunk);
            copy[fault.offset - sent] = (copy[fault.offset - sent] ?? 0) ^ 0xff;
            chunk = copy;
          }
          sent += chunk.byteLength;
          if (fault?.kind === 'slow') {
            upstreamResponse.pause();
            setTimeout(() => {
              response.write(chunk);
              upstreamResponse.resume();
            }, fault.delayMs);
            return;
          }
          response.write(chunk);
        });
        upstreamResponse.on('end', () => {
          if (fault?.kind === 'slow') setTimeout(() => response.end(), fault.delayMs + 1);
          else response.end();
        });
      },
    );
    upstream.on('error', () => request.socket.destroy());
    request.pipe(upstream);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    log,
    add: (rule) => rules.push({ ...rule, used: 0 }),
    clear: () => {
      rules.length = 0;
    },
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

import { createServer, type Socket, connect as tcpConnect } from 'node:net';

export interface TcpProxy {
  /** `127.0.0.1`, with `port`: connect here instead of to the upstream. */
  host: string;
  port: number;
  /**
   * Blackholes every connection whose client has sent `marker` (found in its last 64 KiB), now and
   * the moment a later one sends it: bytes either way are dropped, nothing is closed, no FIN, no RST,
   * as when a NAT or firewall forgets a flow. The chunk holding the marker is dropped too.
   */
  silence(marker: string): void;
  /** New connections and new markers pass again; connections already silenced stay silent. */
  restore(): void;
  /** How many connections have been silenced. */
  silenced(): number;
  /** Destroys every connection (the silenced ones too) and stops listening. */
  stop(): Promise<void>;
}

const HISTORY_BYTES = 64 * 1024;

/** A TCP proxy on loopback in front of `upstreamHost:upstreamPort` that can go silent on chosen connections. */
export async function startTcpProxy(upstreamHost: string, upstreamPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const connections = new Set<{ sent: Buffer; silent: boolean }>();
  let marker: string | undefined;
  let silencedCount = 0;

  const server = createServer((client) => {
    const upstream = tcpConnect(upstreamPort, upstreamHost);
    const connection = { sent: Buffer.alloc(0), silent: false };
    connections.add(connection);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        connections.delete(connection);
      });
    }
    // A peer that closes ends the other side, unless the connection is silent: then nothing passes.
    const closeBoth = () => {
      if (connection.silent) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('end', () => {
      if (!connection.silent) upstream.end();
    });
    upstream.on('end', () => {
      if (!connection.silent) client.end();
    });
    client.on('data', (chunk: Buffer) => {
      const sent = Buffer.concat([connection.sent, chunk]);
      connection.sent = sent.subarray(Math.max(0, sent.byteLength - HISTORY_BYTES));
      if (!connection.silent && marker !== undefined && connection.sent.includes(marker)) {
        connection.silent = true;
        silencedCount += 1;
      }
      if (!connection.silent) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!connection.silent) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    host: '127.0.0.1',
    port,
    silence(text) {
      marker = text;
      for (const connection of connections) {
        if (!connection.silent && connection.sent.includes(text)) {
          connection.silent = true;
          silencedCount += 1;
        }
      }
    },
    restore() {
      marker = undefined;
    },
    silenced: () => silencedCount,
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

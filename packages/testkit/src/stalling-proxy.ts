import { connect, createServer, type Socket } from 'node:net';

export interface StallingProxy {
  /** `127.0.0.1:PORT`, to put in place of the upstream's address. */
  host: string;
  port: number;
  /**
   * From now on nothing is forwarded either way and new connections are accepted but never answered,
   * while every socket stays open: a server that froze, or a network that drops packets silently.
   */
  stall(): void;
  stop(): Promise<void>;
}

/** A TCP proxy on loopback in front of `upstreamHost` (`host:port`) that can be made to stall. */
export async function startStallingProxy(upstreamHost: string): Promise<StallingProxy> {
  const [upstreamName, upstreamPort] = upstreamHost.split(':') as [string, string];
  const sockets = new Set<Socket>();
  let stalled = false;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = createServer((client) => {
    track(client);
    if (stalled) return;
    const upstream = connect(Number(upstreamPort), upstreamName);
    track(upstream);
    client.on('data', (data) => {
      if (!stalled) upstream.write(data);
    });
    upstream.on('data', (data) => {
      if (!stalled) client.write(data);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    port,
    stall: () => {
      stalled = true;
    },
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

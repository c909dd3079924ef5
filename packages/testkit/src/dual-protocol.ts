import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { createServer, type Socket } from 'node:net';

const TLS_HANDSHAKE = 0x16;

/**
 * Listens on one loopback port and hands each connection to `secure` if it opens with a TLS
 * handshake, else to `plain`: `https://host:port` and `http://host:port` then name the same host and
 * port, which is what a scheme downgrade looks like to a client.
 */
export async function listenHttpAndHttps(
  plain: HttpServer,
  secure: HttpsServer,
  onSocket: (socket: Socket) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const front = createServer((socket) => {
    onSocket(socket);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first[0] === TLS_HANDSHAKE) {
        // The TLS socket reads the unshifted bytes itself when it takes the connection over.
        secure.emit('connection', socket);
      } else {
        plain.emit('connection', socket);
        process.nextTick(() => socket.resume());
      }
    });
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const address = front.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () => new Promise((resolve) => front.close(() => resolve())),
  };
}

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { type RunningApi, startApi } from '@splintertree/api';
import { settingsFromEnvironment } from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('launcher API timeouts and limits (raw sockets on loopback)', () => {
  let database: FreshDatabase;
  let api: RunningApi;

  beforeAll(async () => {
    database = await freshDatabase('timeouts', { migrate: true });
    const settings = settingsFromEnvironment({
      DATABASE_URL: database.url,
      SPLINTER_KEK: Buffer.from(generatePatchKey()).toString('hex'),
      SPLINTER_HOME: `/tmp/splinter-timeouts-test-${randomBytes(4).toString('hex')}`,
    });
    api = await startApi(settings, {
      port: '0',
      logLevel: 'silent',
      requestTimeout: '600',
      connectionTimeout: '5000',
      keepAliveTimeout: '300',
      bodyLimit: '64',
    });
  });
  afterAll(async () => {
    await api?.close();
    await database?.drop();
  });

  /** Opens a raw connection to the API, collecting what it answers. */
  async function rawConnection() {
    const { port } = new URL(api.url);
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    const closed = once(socket, 'close').then(() => performance.now());
    return { socket, closed, received: () => received };
  }

  /** Writes `text` one byte every 50 ms until the socket closes; resolves with the time of the close. */
  async function dribble(socket: Socket, text: string, closed: Promise<number>) {
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < text.length && socket.writable) socket.write(text[sent++]!);
    }, 50);
    try {
      return await closed;
    } finally {
      clearInterval(timer);
    }
  }

  it('answers 408 and closes a connection whose body dribbles in, within the request timeout', async () => {
    const { socket, closed, received } = await rawConnection();
    const started = performance.now();
    socket.write(
      'POST /launcher/patches/1/unlock HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n',
    );
    const at = await dribble(socket, `{"padding":"${'x'.repeat(46)}"}`, closed);
    // 600 ms, checked every 150 ms; the whole body (within the 64-byte limit) would take 3 s.
    expect(at - started).toBeGreaterThanOrEqual(550);
    expect(at - started).toBeLessThan(2000);
    expect(received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('closes a connection whose headers dribble in (slowloris), within the request timeout', async () => {
    const { socket, closed } = await rawConnection();
    const started = performance.now();
    socket.write('GET /healthz HTTP/1.1\r\n');
    const at = await dribble(socket, `X-Slow: ${'y'.repeat(2000)}\r\n\r\n`, closed);
    expect(at - started).toBeGreaterThanOrEqual(550);
    expect(at - started).toBeLessThan(2000);
  });

  it('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const { socket, closed, received } = await rawConnection();
    socket.write('GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n');
    const answered = performance.now();
    const at = await closed;
    expect(received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(received()).toContain('keep-alive');
    expect(at - answered).toBeGreaterThanOrEqual(250);
    expect(at - answered).toBeLessThan(2000);
  });

  it('refuses a body over the limit with 413 and a problem body', async () => {
    const response = await fetch(`${api.url}/launcher/patches/1/unlock`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ padding: 'x'.repeat(100) }),
    });
    expect(response.status).toBe(413);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    expect(await response.json()).toMatchObject({ code: 'INVALID_ARGUMENT', status: 413 });
  });

  it('reports a timeout out of range as a start-up problem', async () => {
    const error = await startApi(settingsFromEnvironment({}), {
      requestTimeout: '5',
      bodyLimit: 'lots',
    }).then(
      () => undefined,
      (e: unknown) => e as Error & { details: { problems: string[] } },
    );
    expect(error?.details.problems.slice(0, 2)).toEqual([
      '--request-timeout must be from 100 to 3600000',
      '--body-limit must be a whole number',
    ]);
  });
});

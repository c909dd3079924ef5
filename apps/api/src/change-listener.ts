import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { SplinterError } from '@splintertree/errors';

export const LISTENER_APPLICATION_NAME = 'splinter-listener';

export interface ChangeListenerOptions {
  connectionString: string;
  /** application_name of the connection (default LISTENER_APPLICATION_NAME). */
  applicationName?: string | undefined;
  /** What to do with each notification, by channel. */
  channels: Record<string, (payload: string) => void>;
  /**
   * How often a heartbeat goes round. Everything the listener waits for (connecting, LISTEN, each
   * heartbeat) must happen within one interval, or the connection counts as dead.
   */
  heartbeatMs: number;
  /** Told once, when the connection fails or goes silent; its socket is destroyed by then. */
  onLost: (error: SplinterError) => void;
}

export interface ChangeListener {
  /** Ends the connection (destroyed if it does not end within one heartbeat interval); onLost is not called. */
  close(): Promise<void>;
}

/**
 * LISTENs on `channels` over one dedicated connection and keeps proving it alive: every interval it
 * NOTIFYs a channel of its own over that connection and expects the notification back before the
 * next beat. A connection that dies silently (a NAT or firewall forgetting it, no FIN, no RST) raises
 * no error and delivers nothing: only the missing heartbeat tells. The connection is not taken from
 * a pool, so a dead one is destroyed on the spot instead of holding a pool slot until TCP gives up.
 */
export async function openChangeListener(options: ChangeListenerOptions): Promise<ChangeListener> {
  // Loaded on first use, like the chain's drivers: most CLI commands never open the database.
  const { default: pg } = await import('pg');
  const heartbeatChannel = `splinter_heartbeat_${randomBytes(8).toString('hex')}`;
  const socket = new Socket();
  const client = new pg.Client({
    connectionString: options.connectionString,
    // Names the connection in pg_stat_activity, for operators (and tests) looking for it.
    application_name: options.applicationName ?? LISTENER_APPLICATION_NAME,
    keepAlive: true,
    stream: () => socket,
  });
  let finished = false;
  let beat = 0;
  let awaiting: string | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let reportLost: (error: SplinterError) => void;

  const fail = (error: unknown) => {
    if (finished) return;
    finished = true;
    clearInterval(heartbeat);
    socket.destroy();
    reportLost(lostError(error));
  };
  client.on('error', fail);
  client.on('end', () => fail(new Error('the connection was closed')));
  client.on('notification', (message) => {
    if (message.channel === heartbeatChannel) {
      if (message.payload === awaiting) awaiting = undefined;
      return;
    }
    options.channels[message.channel]?.(message.payload ?? '');
  });

  const deadline = setTimeout(
    () => fail(new Error(`not listening within ${options.heartbeatMs} ms`)),
    options.heartbeatMs,
  );
  const listening = new Promise<void>((resolve, reject) => {
    reportLost = reject;
    const channels = [...Object.keys(options.channels), heartbeatChannel];
    client
      .connect()
      .then(() =>
        client.query(channels.map((channel) => `LISTEN ${pg.escapeIdentifier(channel)}`).join('; ')),
      )
      .then(() => resolve(), fail);
  });
  try {
    await listening;
  } finally {
    clearTimeout(deadline);
  }
  reportLost = options.onLost;
  heartbeat = setInterval(() => {
    if (awaiting !== undefined) {
      return fail(new Error(`heartbeat not heard back within ${options.heartbeatMs} ms`));
    }
    beat += 1;
    awaiting = String(beat);
    client.query('SELECT pg_notify($1, $2)', [heartbeatChannel, awaiting]).catch(fail);
  }, options.heartbeatMs);

  return {
    async close() {
      if (finished) return;
      finished = true;
      clearInterval(heartbeat);
      const force = setTimeout(() => socket.destroy(), options.heartbeatMs);
      await client.end().catch(() => undefined);
      clearTimeout(force);
    },
  };
}

function lostError(error: unknown): SplinterError {
  const message = error instanceof Error ? error.message : String(error);
  return new SplinterError('DATABASE_ERROR', `LISTEN connection failed: ${message.split('\n')[0]}`, {
    cause: error,
  });
}

import { mkdtemp, rm } from 'node:fs/promises';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCertificate } from './certificate.js';
import { listenHttpAndHttps } from './dual-protocol.js';

export type Fault =
  /** Forward the response, but cut the connection after this many body bytes. */
  | { kind: 'reset-after'; bytes: number }
  /** Answer this status without asking the registry (optionally with headers such as Retry-After). */
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Forward, but pause this long between body chunks. */
  | { kind: 'slow'; delayMs: number }
  /** Forward, flipping the bits of the body byte at this offset (a hostile or broken mirror). */
  | { kind: 'corrupt'; offset: number }
  /** Forward without the Range header, so the registry answers 200 with the whole blob (as ECR or S3 setups do). */
  | { kind: 'ignore-range' }
  /**
   * A GET the registry would serve is answered with 307 to a URL on the proxy's storage port, which
   * serves the same bytes (honouring Range) like a presigned S3 URL: with 403 once it has served `uses`
   * requests (default: no limit), from the start if `expired`, or after expireStorageUrls(). With
   * `challenge` the storage host answers 401 with a Bearer challenge of its own instead of serving.
   */
  | { kind: 'redirect'; uses?: number; expired?: boolean; challenge?: boolean }
  /**
   * A GET over TLS the registry would serve is answered with 307 to the same URL over plain http on the
   * same port (`tls` proxies); the plain request is then forwarded as it comes.
   */
  | { kind: 'downgrade' }
  /**
   * Never answer: the request's body is read and dropped, and the request stays open until the client
   * goes away (a registry stalled mid-upload). The log entry is marked `held` as the request arrives.
   */
  | { kind: 'hold' }
  /** Forward, but stop sending the body after this many bytes and keep the connection open (`held`). */
  | { kind: 'stall-after'; bytes: number }
  /** Forward untouched: with `times`, lets the first matching requests through before a later rule. */
  | { kind: 'pass' };

export interface FaultRule {
  method?: string;
  path: RegExp;
  /** Only requests with (true) or without (false) a Range header; default: either. */
  range?: boolean;
  fault: Fault;
  /** How many matching requests get the fault (default: every one). */
  times?: number;
}

export interface ProxyRequest {
  /** `registry`: the proxy's own port; `storage`: the port redirects point at. */
  listener: 'registry' | 'storage';
  /** Whether the request came over TLS. */
  secure: boolean;
  method: string;
  /** Path and query, e.g. `/v2/game/blobs/sha256:…` or `/_storage/3/sha256:…`. */
  path: string;
  range: string | undefined;
  authorization: string | undefined;
  /** The request's User-Agent header. */
  userAgent: string | undefined;
  /** The status answered; undefined if the connection was cut before one was. */
  status: number | undefined;
  /** Body bytes sent to the client. */
  bytes: number;
  /** A `hold` or `stall-after` fault is keeping this request open. */
  held: boolean;
}

export interface FaultProxyOptions {
  /**
   * Serve TLS (a self-signed certificate for 127.0.0.1, see `certificate`) and plain http on the same
   * port: the registry is then `https://host`, and a `downgrade` redirect leads to `http://host`.
   */
  tls?: boolean;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`: use it as the registry host. */
  host: string;
  /** The PEM certificate clients must trust when the proxy serves TLS. */
  certificate: string | undefined;
  /** `127.0.0.1:PORT` of the storage port that `redirect` faults point at (plain http). */
  storageHost: string;
  /** Every request either port received, in order, with what it was answered. */
  log: ProxyRequest[];
  /**
   * Resolves with the first request of the log that matches, as soon as one does (checked when a
   * request arrives and when one is held): the event a test waits for before it acts, no polling.
   */
  seen(match: (request: ProxyRequest) => boolean): Promise<ProxyRequest>;
  add(rule: FaultRule): void;
  clear(): void;
  /** Storage URLs handed out so far answer 403 from now on. */
  expireStorageUrls(): void;
  stop(): Promise<void>;
}

interface StorageGrant {
  /** The registry path the URL stands for, fetched with the credentials the registry accepted. */
  path: string;
  authorization: string | undefined;
  served: number;
  uses: number;
  expired: boolean;
  challenge: boolean;
}

/** A response whose status and body bytes land in the request's log entry. */
class LoggedResponse {
  constructor(
    readonly raw: ServerResponse,
    readonly entry: ProxyRequest,
  ) {}

  head(status: number, headers: IncomingHttpHeaders | Record<string, string>): void {
    this.entry.status = status;
    this.raw.writeHead(status, headers);
  }

  write(chunk: Buffer): void {
    this.entry.bytes += chunk.byteLength;
    this.raw.write(chunk);
  }

  end(text?: string): void {
    if (text !== undefined) this.entry.bytes += Buffer.byteLength(text);
    this.raw.end(text);
  }
}

/**
 * A reverse proxy on loopback in front of a registry that injects faults into matching requests. The
 * Host header is forwarded unchanged, so the registry's absolute upload URLs point back at the proxy.
 */
export async function startFaultProxy(
  upstreamHost: string,
  options: FaultProxyOptions = {},
): Promise<FaultProxy> {
  const [upstreamName, upstreamPort] = upstreamHost.split(':') as [string, string];
  const rules: Array<FaultRule & { used: number }> = [];
  const log: ProxyRequest[] = [];
  const waiters: Array<{ match: (request: ProxyRequest) => boolean; resolve: (r: ProxyRequest) => void }> =
    [];
  const notify = () => {
    for (const waiter of waiters.slice()) {
      const found = log.find(waiter.match);
      if (found) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(found);
      }
    }
  };
  const grants = new Map<string, StorageGrant>();
  const sockets = new Set<Socket>();
  let host = '';
  let storageHost = '';

  const track = (server: Server) =>
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });

  function begin(listener: ProxyRequest['listener'], secure: boolean, request: IncomingMessage) {
    const entry: ProxyRequest = {
      listener,
      secure,
      method: request.method ?? 'GET',
      path: request.url ?? '/',
      range: request.headers.range,
      authorization: request.headers.authorization,
      userAgent: request.headers['user-agent'],
      status: undefined,
      bytes: 0,
      held: false,
    };
    log.push(entry);
    const rule = rules.find(
      (r) =>
        (r.method === undefined || r.method === entry.method) &&
        r.path.test(entry.path) &&
        (r.range === undefined || r.range === (entry.range !== undefined)) &&
        r.used < (r.times ?? Number.POSITIVE_INFINITY),
    );
    if (rule) rule.used += 1;
    if (rule?.fault.kind === 'hold') entry.held = true;
    queueMicrotask(notify);
    return { entry, fault: rule?.fault };
  }

  function answerStatus(response: LoggedResponse, fault: Extract<Fault, { kind: 'status' }>): void {
    response.raw.req.resume();
    response.head(fault.status, { 'content-type': 'application/json', ...fault.headers });
    response.end('{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}');
  }

  /**
   * Sends the request to the registry and relays the answer with the fault applied. `divert` sees the
   * registry's answer first: if it takes it (returns true), the registry's body is dropped.
   */
  function forward(
    request: IncomingMessage,
    response: LoggedResponse,
    target: { path: string; headers: IncomingHttpHeaders },
    fault: Fault | undefined,
    divert?: (upstream: IncomingMessage) => boolean,
  ): void {
    const upstream = httpRequest(
      { host: upstreamName, port: Number(upstreamPort), method: request.method, ...target },
      (upstreamResponse) => {
        if (divert?.(upstreamResponse)) {
          upstreamResponse.destroy();
          return;
        }
        response.head(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
        relay(upstreamResponse, response, request.socket, fault, () => {
          response.entry.held = true;
          notify();
        });
      },
    );
    upstream.on('error', () => request.socket.destroy());
    request.pipe(upstream);
  }

  /** Answers with a redirect instead, if the registry would serve the GET (so its auth still applies). */
  function redirectIfServed(
    request: IncomingMessage,
    response: LoggedResponse,
    headers: IncomingHttpHeaders,
    location: () => string,
  ): void {
    forward(request, response, { path: request.url ?? '/', headers }, undefined, (upstream) => {
      if (upstream.statusCode !== 200 && upstream.statusCode !== 206) return false;
      response.head(307, { location: location(), 'content-length': '0' });
      response.end();
      return true;
    });
  }

  function grant(request: IncomingMessage, fault: Extract<Fault, { kind: 'redirect' }>): string {
    const id = String(grants.size + 1);
    grants.set(id, {
      path: request.url ?? '/',
      authorization: request.headers.authorization,
      served: 0,
      uses: fault.uses ?? Number.POSITIVE_INFINITY,
      expired: fault.expired === true,
      challenge: fault.challenge === true,
    });
    const digest = (request.url ?? '').split('?')[0]!.split('/').pop();
    return `http://${storageHost}/_storage/${id}/${digest}`;
  }

  const onRegistry = (secure: boolean) => (request: IncomingMessage, raw: ServerResponse) => {
    const { entry, fault } = begin('registry', secure, request);
    const response = new LoggedResponse(raw, entry);
    if (fault?.kind === 'status') return answerStatus(response, fault);
    if (fault?.kind === 'hold') {
      request.resume();
      return;
    }
    // Distribution builds absolute upload URLs from this, so they keep the scheme the client used.
    const headers: IncomingHttpHeaders = {
      ...request.headers,
      'x-forwarded-proto': secure ? 'https' : 'http',
    };
    if (fault?.kind === 'ignore-range') delete headers.range;
    if (fault?.kind === 'redirect' && request.method === 'GET') {
      redirectIfServed(request, response, headers, () => grant(request, fault));
    } else if (fault?.kind === 'downgrade' && secure && request.method === 'GET') {
      redirectIfServed(request, response, headers, () => `http://${host}${request.url}`);
    } else {
      forward(request, response, { path: request.url ?? '/', headers }, fault);
    }
  };

  const onStorage = (request: IncomingMessage, raw: ServerResponse) => {
    const { entry, fault } = begin('storage', false, request);
    const response = new LoggedResponse(raw, entry);
    if (fault?.kind === 'status') return answerStatus(response, fault);
    if (entry.path.startsWith('/_token')) {
      response.head(200, { 'content-type': 'application/json' });
      return response.end('{"token":"storage-token"}');
    }
    const found = grants.get(/^\/_storage\/([^/]+)\//.exec(entry.path)?.[1] ?? '');
    if (found?.challenge) {
      response.head(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="http://${storageHost}/_token",service="storage"`,
      });
      return response.end('{"errors":[{"code":"UNAUTHORIZED","message":"storage wants its own token"}]}');
    }
    if (!found || found.expired || found.served >= found.uses) {
      response.head(403, { 'content-type': 'application/xml' });
      return response.end('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
    }
    found.served += 1;
    const headers: IncomingHttpHeaders = { host };
    if (found.authorization) headers.authorization = found.authorization;
    if (request.headers.range && fault?.kind !== 'ignore-range') headers.range = request.headers.range;
    forward(request, response, { path: found.path, headers }, fault);
  };

  let certificate: string | undefined;
  let certificateDir: string | undefined;
  let closeRegistry: () => Promise<void>;
  if (options.tls) {
    certificateDir = await mkdtemp(join(tmpdir(), 'splinter-proxy-tls-'));
    const pair = selfSignedCertificate({
      dir: certificateDir,
      name: 'proxy',
      commonName: '127.0.0.1',
      ipAddress: '127.0.0.1',
    });
    certificate = pair.certificate;
    const plain = createServer(onRegistry(false));
    const secure = createHttpsServer({ key: pair.key, cert: pair.certificate }, onRegistry(true));
    const front = await listenHttpAndHttps(plain, secure, (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    host = `127.0.0.1:${front.port}`;
    closeRegistry = front.close;
  } else {
    const server = track(createServer(onRegistry(false)));
    host = `127.0.0.1:${await listen(server)}`;
    closeRegistry = () => close(server);
  }
  const storage = track(createServer(onStorage));
  storageHost = `127.0.0.1:${await listen(storage)}`;

  return {
    host,
    certificate,
    storageHost,
    log,
    seen: (match) =>
      new Promise((resolve) => {
        waiters.push({ match, resolve });
        notify();
      }),
    add: (rule) => rules.push({ ...rule, used: 0 }),
    clear: () => {
      rules.length = 0;
    },
    expireStorageUrls: () => {
      for (const found of grants.values()) found.expired = true;
    },
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all([closeRegistry(), close(storage)]);
      if (certificateDir) await rm(certificateDir, { recursive: true, force: true });
    },
  };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    }),
  );
}

function close(server: { close(callback: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Copies an upstream body to the client, applying a body fault. */
function relay(
  upstreamResponse: IncomingMessage,
  response: LoggedResponse,
  clientSocket: Socket,
  fault: Fault | undefined,
  onHeld: () => void,
): void {
  let sent = 0;
  upstreamResponse.on('data', (data: Buffer) => {
    let chunk = data;
    if (fault?.kind === 'stall-after') {
      const room = fault.bytes - sent;
      if (room > 0) {
        response.write(chunk.subarray(0, room));
        sent += Math.min(room, chunk.byteLength);
      }
      if (chunk.byteLength >= room) {
        upstreamResponse.pause();
        onHeld();
      }
      return;
    }
    if (fault?.kind === 'reset-after') {
      const room = fault.bytes - sent;
      if (room <= 0 || chunk.byteLength > room) {
        if (room > 0) response.write(chunk.subarray(0, room));
        upstreamResponse.destroy();
        clientSocket.destroy();
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
}

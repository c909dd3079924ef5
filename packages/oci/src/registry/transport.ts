import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BlockList, isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { SplinterError } from '@splintertree/errors';
import { Agent, Dispatcher, ProxyAgent } from 'undici';

/** `splinter/<version>`, sent as the User-Agent of every registry and token request. */
export const USER_AGENT = `splinter/${(createRequire(import.meta.url)('../../package.json') as { version: string }).version}`;

/** Proxies as Go's `net/http` (and so docker, oras, skopeo) read them: HTTPS_PROXY, HTTP_PROXY, NO_PROXY. */
export interface ProxySettings {
  httpProxy?: string | undefined;
  httpsProxy?: string | undefined;
  noProxy?: string | undefined;
}

export interface TransportOptions {
  /** A PEM bundle of extra certificate authorities, trusted beside the system's (oras `--ca-file`). */
  caFile?: string | undefined;
  /** TLS without certificate verification (oras `--insecure`, skopeo `--tls-verify=false`). */
  insecure?: boolean | undefined;
  proxy?: ProxySettings | undefined;
  /** Longest wait to connect, for response headers and between body bytes (default 120 s; 10 s to connect). */
  timeoutMs?: number | undefined;
}

/**
 * The proxy variables of an environment, upper case first as Go's httpproxy reads them. An empty
 * value counts as unset.
 */
export function proxySettingsFromEnvironment(env: Record<string, string | undefined>): ProxySettings {
  const pick = (...names: string[]) => {
    for (const name of names) {
      const value = env[name]?.trim();
      if (value) return value;
    }
    return undefined;
  };
  return {
    httpProxy: pick('HTTP_PROXY', 'http_proxy'),
    httpsProxy: pick('HTTPS_PROXY', 'https_proxy'),
    noProxy: pick('NO_PROXY', 'no_proxy'),
  };
}

function agentOptions(timeoutMs: number | undefined) {
  return {
    connections: 16,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs ?? 120_000,
    bodyTimeout: timeoutMs ?? 120_000,
  };
}

/**
 * One undici dispatcher for a registry client: keep-alive connections, the TLS trust the options ask
 * for, and the environment's proxies. With no option set it is a plain Agent, as before.
 */
export function createRegistryDispatcher(options: TransportOptions = {}): Dispatcher {
  const tls = tlsOptions(options);
  const common = agentOptions(options.timeoutMs);
  const connectTimeout = Math.min(options.timeoutMs ?? 10_000, 10_000);
  const direct = new Agent({ ...common, connect: { timeout: connectTimeout, ...tls } });
  const proxy = options.proxy ?? {};
  if (!proxy.httpProxy && !proxy.httpsProxy) return direct;
  const through = (uri: string | undefined) =>
    uri === undefined
      ? undefined
      : new ProxyAgent({ ...common, uri: proxyUri(uri), ...(tls ? { requestTls: tls } : {}) });
  return new ProxyRouter(direct, through(proxy.httpProxy), through(proxy.httpsProxy), proxy.noProxy);
}

function tlsOptions(options: TransportOptions): { ca?: string[]; rejectUnauthorized?: boolean } | undefined {
  if (options.insecure) return { rejectUnauthorized: false };
  if (options.caFile === undefined) return undefined;
  let pem: string;
  try {
    pem = readFileSync(options.caFile, 'utf8');
  } catch (error) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `cannot read CA file ${options.caFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new SplinterError('INVALID_ARGUMENT', `CA file ${options.caFile} holds no PEM certificate`);
  }
  // Node replaces its roots when `ca` is given; oras adds the file to the system pool, so keep both
  // (and NODE_EXTRA_CA_CERTS, which Node otherwise adds only to its default store).
  const ca = [...rootCertificates, pem];
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      ca.push(readFileSync(extra, 'utf8'));
    } catch {
      // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS.
    }
  }
  return { ca };
}

/** Go reads `proxy:3128` as `http://proxy:3128`. */
function proxyUri(value: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
}

/** `::1` in all its spellings (`0:0:0:0:0:0:0:1`, ...): BlockList compares addresses, not text. */
const LOOPBACK6 = new BlockList();
LOOPBACK6.addAddress('::1', 'ipv6');

interface NoProxyRule {
  host: string;
  port: number | undefined;
  /** `.example.com`: subdomains only. */
  subdomainsOnly: boolean;
}

/**
 * Which origins go direct, by Go's `httpproxy` rules (what docker, oras and skopeo use): loopback
 * hosts (`localhost`, 127.0.0.0/8, ::1) never go through a proxy; NO_PROXY is a comma- or
 * space-separated list of `*`, host names (which match their subdomains too), `.domain` or
 * `*.domain` (subdomains only), IP addresses and CIDR ranges, each name optionally with `:port`.
 */
export class NoProxyRules {
  private readonly rules: NoProxyRule[] = [];
  private readonly ranges = new BlockList();
  private readonly everything: boolean;

  constructor(noProxy: string | undefined) {
    const entries = (noProxy ?? '').split(/[,\s]+/).filter((entry) => entry !== '');
    this.everything = entries.includes('*');
    for (const entry of entries) {
      const cidr = /^([0-9a-f.:]+)\/(\d{1,3})$/i.exec(entry);
      if (cidr && isIP(cidr[1]!)) {
        this.ranges.addSubnet(cidr[1]!, Number(cidr[2]), isIP(cidr[1]!) === 6 ? 'ipv6' : 'ipv4');
        continue;
      }
      if (isIP(entry)) {
        this.rules.push({ host: entry.toLowerCase(), port: undefined, subdomainsOnly: false });
        continue;
      }
      const withPort = /^(.*?)(?::(\d+))?$/.exec(entry.replace(/^\[(.*)\](?=:|$)/, '$1'));
      let host = (withPort?.[1] ?? entry).toLowerCase();
      const subdomainsOnly = host.startsWith('.') || host.startsWith('*.');
      host = host.replace(/^\*?\./, '');
      this.rules.push({ host, port: withPort?.[2] ? Number(withPort[2]) : undefined, subdomainsOnly });
    }
  }

  /** True when a request to `origin` must not use the proxy. */
  bypasses(origin: string | URL): boolean {
    const url = typeof origin === 'string' ? new URL(origin) : origin;
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    if (host === 'localhost' || host.endsWith('.localhost')) return true;
    const family = isIP(host);
    if (family === 4 && host.startsWith('127.')) return true;
    if (family === 6 && LOOPBACK6.check(host, 'ipv6')) return true;
    if (this.everything) return true;
    if (family !== 0 && this.ranges.check(host, family === 6 ? 'ipv6' : 'ipv4')) return true;
    for (const rule of this.rules) {
      if (rule.port !== undefined && rule.port !== port) continue;
      if (!rule.subdomainsOnly && host === rule.host) return true;
      if (family === 0 && host.endsWith(`.${rule.host}`)) return true;
    }
    return false;
  }
}

/** Sends each request direct or through the proxy for its scheme, as NoProxyRules decide. */
class ProxyRouter extends Dispatcher {
  private readonly noProxy: NoProxyRules;

  constructor(
    private readonly direct: Dispatcher,
    private readonly http: Dispatcher | undefined,
    private readonly https: Dispatcher | undefined,
    noProxy: string | undefined,
  ) {
    super();
    this.noProxy = new NoProxyRules(noProxy);
  }

  private pick(origin: string): Dispatcher {
    const url = new URL(origin);
    const proxied = url.protocol === 'https:' ? this.https : this.http;
    if (!proxied || this.noProxy.bypasses(url)) return this.direct;
    return proxied;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.pick(String(options.origin)).dispatch(options, handler);
  }

  override async close(): Promise<void> {
    await Promise.all([this.direct.close(), this.http?.close(), this.https?.close()]);
  }

  override async destroy(): Promise<void> {
    await Promise.all([this.direct.destroy(), this.http?.destroy(), this.https?.destroy()]);
  }
}

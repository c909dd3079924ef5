import { join } from 'node:path';
import {
  dockerConfigCredentials,
  OciLayoutTarget,
  type ProxySettings,
  RegistryClient,
  type RegistryClientOptions,
  RegistryTarget,
  type RegistryTargetOptions,
  type Target,
  type UploadSessions,
} from '@splintertree/oci';
import { formatLocation, type Location } from './locations.js';
import { ScopedTarget } from './scoped-target.js';

export interface StoreOptions {
  home: string;
  plainHttp: boolean;
  dockerConfigDir: string | undefined;
  /** REGISTRY_AUTH_FILE; `access.authFile` (the flag) wins over it. */
  registryAuthFile?: string | undefined;
  access?: RegistryAccess | undefined;
  proxy?: ProxySettings | undefined;
  /** Where registry upload sessions are noted while open (see leftovers.ts). */
  sessions?: UploadSessions | undefined;
}

/** How registries are reached, from flags over their environment variables (see docs/registry-access.md). */
export interface RegistryAccess {
  /** `--registry-config` / `--authfile`. */
  authFile?: string | undefined;
  /** `--ca-file` or SPLINTER_CA_FILE. */
  caFile?: string | undefined;
  /** `--insecure` or SPLINTER_INSECURE. */
  insecure?: boolean | undefined;
}

/**
 * Opens targets for locations: one embedded OCI layout, one target per registry repository, and one
 * client per registry host, which its repositories share (connections, tokens, the CA file read once).
 */
export class Stores {
  private embedded: Promise<OciLayoutTarget> | undefined;
  private readonly registries = new Map<string, RegistryTarget>();
  private readonly clients = new Map<string, RegistryClient>();

  constructor(private readonly options: StoreOptions) {}

  /** The embedded store: also the local content cache pulls fill, so a rollback downloads nothing. */
  embeddedLayout(): Promise<OciLayoutTarget> {
    this.embedded ??= OciLayoutTarget.open(join(this.options.home, 'store'));
    return this.embedded;
  }

  async target(location: Location): Promise<Target> {
    if (location.kind === 'embedded')
      return new ScopedTarget(await this.embeddedLayout(), location.repository);
    const key = `${location.registry}/${location.repository}`;
    let target = this.registries.get(key);
    if (!target) {
      target = new RegistryTarget({
        registry: location.registry,
        repository: location.repository,
        client: this.client(location.registry),
        sessions: this.options.sessions,
      });
      this.registries.set(key, target);
    }
    return target;
  }

  /** The client of one registry host, shared by the targets of its repositories. */
  private client(registry: string): RegistryClient {
    let client = this.clients.get(registry);
    if (!client) {
      client = new RegistryClient(this.clientOptions(registry, { plainHttp: this.options.plainHttp }));
      this.clients.set(registry, client);
    }
    return client;
  }

  /** This process's registry access: credentials from the auth file the flags and environment name, the CA or --insecure, proxies. */
  private clientOptions(
    registry: string,
    options: Pick<RegistryClientOptions, 'plainHttp' | 'retry' | 'timeoutMs'>,
  ): RegistryClientOptions {
    return {
      registry,
      credentials: dockerConfigCredentials({
        configDir: this.options.dockerConfigDir,
        authFile: this.options.access?.authFile,
        registryAuthFile: this.options.registryAuthFile,
      }),
      transport: {
        caFile: this.options.access?.caFile,
        insecure: this.options.access?.insecure,
        proxy: this.options.proxy,
      },
      ...options,
    };
  }

  /**
   * A target of one repository with its own client and this process's registry access, for one-off
   * requests with their own retry and timeouts (cancelling a leftover upload session). Not cached, and
   * closing it closes its client (see target() for the shared ones).
   */
  registryTarget(
    registry: string,
    repository: string,
    options: Pick<RegistryTargetOptions, 'plainHttp' | 'sessions' | 'retry' | 'timeoutMs'>,
  ): RegistryTarget {
    const { sessions, ...client } = options;
    return new RegistryTarget({ ...this.clientOptions(registry, client), repository, sessions });
  }

  describe(location: Location): string {
    return formatLocation(location);
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((client) => client.close()));
    this.registries.clear();
    this.clients.clear();
  }
}

import { join } from 'node:path';
import {
  OciLayoutTarget,
  type ProxySettings,
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

/** Opens targets for locations: one embedded OCI layout, and one client per registry repository. */
export class Stores {
  private embedded: Promise<OciLayoutTarget> | undefined;
  private readonly registries = new Map<string, RegistryTarget>();

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
      target = this.registryTarget(location.registry, location.repository, {
        plainHttp: this.options.plainHttp,
        sessions: this.options.sessions,
      });
      this.registries.set(key, target);
    }
    return target;
  }

  /**
   * A client of one repository with this process's registry access: credentials from the auth file
   * the flags and environment name, the CA or --insecure, proxies. Not cached (see target()).
   */
  registryTarget(
    registry: string,
    repository: string,
    options: Pick<RegistryTargetOptions, 'plainHttp' | 'sessions' | 'retry' | 'timeoutMs'>,
  ): RegistryTarget {
    return new RegistryTarget({
      registry,
      repository,
      dockerConfigDir: this.options.dockerConfigDir,
      authFile: { authFile: this.options.access?.authFile, registryAuthFile: this.options.registryAuthFile },
      transport: {
        caFile: this.options.access?.caFile,
        insecure: this.options.access?.insecure,
        proxy: this.options.proxy,
      },
      ...options,
    });
  }

  describe(location: Location): string {
    return formatLocation(location);
  }

  async close(): Promise<void> {
    await Promise.all([...this.registries.values()].map((target) => target.close()));
    this.registries.clear();
  }
}

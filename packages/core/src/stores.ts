import { join } from 'node:path';
import { OciLayoutTarget, RegistryTarget, type Target } from '@splintertree/oci';
import { formatLocation, type Location } from './locations.js';
import { ScopedTarget } from './scoped-target.js';

export interface StoreOptions {
  home: string;
  plainHttp: boolean;
  dockerConfigDir: string | undefined;
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
      target = new RegistryTarget({
        registry: location.registry,
        repository: location.repository,
        plainHttp: this.options.plainHttp,
        dockerConfigDir: this.options.dockerConfigDir,
      });
      this.registries.set(key, target);
    }
    return target;
  }

  describe(location: Location): string {
    return formatLocation(location);
  }

  async close(): Promise<void> {
    await Promise.all([...this.registries.values()].map((target) => target.close()));
    this.registries.clear();
  }
}

import type { SplinterError } from '@splintertree/errors';
import type { RegistryClient, RegistryResponse } from './client.js';
import { registryFailure } from './failure.js';

/**
 * One repository of a registry as its blob, manifest and referrer stores address it: the shared
 * client, the `/v2/<name>/...` paths, token scopes and the error a refusal becomes.
 */
export class Repository {
  constructor(
    readonly client: RegistryClient,
    readonly name: string,
    /** `host/name`, for messages. */
    readonly location: string,
  ) {}

  scopes(push = false, extra: string[] = []): string[] {
    return [`repository:${this.name}:${push ? 'pull,push' : 'pull'}`, ...extra];
  }

  path(kind: 'blobs' | 'manifests' | 'referrers', reference: string): string {
    return `/v2/${this.name}/${kind}/${reference}`;
  }

  failure(response: RegistryResponse, what: string): Promise<SplinterError> {
    return registryFailure(response, this.location, what);
  }
}

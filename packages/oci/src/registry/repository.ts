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

  /** HEAD of a blob or manifest: true on 200, false on 404, the registry's refusal otherwise. */
  async has(
    kind: 'blobs' | 'manifests',
    digest: string,
    signal: AbortSignal | undefined,
    headers?: Record<string, string>,
  ): Promise<boolean> {
    const response = await this.client.send({
      method: 'HEAD',
      url: this.path(kind, digest),
      ...(headers ? { headers } : {}),
      scopes: this.scopes(),
      replayable: true,
      signal,
    });
    if (response.status !== 200 && response.status !== 404)
      throw await this.failure(response, `HEAD ${digest}`);
    await response.body.dump();
    return response.status === 200;
  }
}

import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryTarget } from '@splintertree/oci';
import { selfSignedCertificate } from '@splintertree/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Stores } from '../src/stores.js';

describe('Stores', () => {
  let home: string;
  let stores: Stores;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'splinter-stores-'));
    stores = new Stores({ home, plainHttp: true, dockerConfigDir: join(home, 'docker') });
  });
  afterEach(async () => {
    await stores.close();
    await rm(home, { recursive: true, force: true });
  });

  const at = (registry: string, repository: string) => ({ kind: 'registry' as const, registry, repository });

  it('shares one client per registry host between its repositories, and keeps one target per repository', async () => {
    const a = await stores.target(at('registry.test:5000', 'game/eu-1'));
    const b = await stores.target(at('registry.test:5000', 'game/us-1'));
    const other = await stores.target(at('mirror.test', 'game/eu-1'));
    expect(a).toBeInstanceOf(RegistryTarget);
    expect(a).not.toBe(b);
    expect(await stores.target(at('registry.test:5000', 'game/eu-1'))).toBe(a);
    expect((a as RegistryTarget).client).toBe((b as RegistryTarget).client);
    expect((other as RegistryTarget).client).not.toBe((a as RegistryTarget).client);
    expect((other as RegistryTarget).client.origin).toBe('http://mirror.test');
  });

  it('reads the CA file once per registry host, not once per repository', async () => {
    const ca = selfSignedCertificate({ dir: home, name: 'ca', commonName: 'studio-ca' });
    const withCa = new Stores({
      home,
      plainHttp: false,
      dockerConfigDir: join(home, 'docker'),
      access: { caFile: ca.certificatePath },
    });
    try {
      await withCa.target(at('registry.test', 'game/eu-1'));
      await unlink(ca.certificatePath);
      // A second client would read the file again and fail: INVALID_ARGUMENT, cannot read CA file.
      await expect(withCa.target(at('registry.test', 'game/us-1'))).resolves.toBeInstanceOf(RegistryTarget);
    } finally {
      await withCa.close();
    }
  });

  it('gives a one-off registryTarget a client of its own, with its own retry policy', async () => {
    const shared = (await stores.target(at('registry.test:5000', 'game/eu-1'))) as RegistryTarget;
    const once = stores.registryTarget('registry.test:5000', 'game/eu-1', {
      plainHttp: true,
      retry: { maxAttempts: 2, maxElapsedMs: 5000 },
      timeoutMs: 3000,
    });
    expect(once.client).not.toBe(shared.client);
    expect(once.client.retry.maxAttempts).toBe(2);
    await once.close();
  });
});

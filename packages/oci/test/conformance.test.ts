import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dockerConfigCredentials, MemoryTarget, OciLayoutTarget, RegistryTarget } from '@splintertree/oci';
import { startRegistry } from '@splintertree/testkit';
import { describeTargetConformance } from './conformance.js';

describeTargetConformance('memory', async () => ({ target: new MemoryTarget(), cleanup: async () => {} }));

describeTargetConformance('OCI layout', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'splinter-layout-'));
  return {
    target: await OciLayoutTarget.open(dir),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

for (const auth of ['none', 'htpasswd', 'token'] as const) {
  describeTargetConformance(`registry (CNCF Distribution, auth ${auth})`, async () => {
    const registry = await startRegistry({ auth });
    const target = new RegistryTarget({
      registry: registry.host,
      repository: 'conformance/repo',
      plainHttp: true,
      credentials: dockerConfigCredentials(registry.dockerConfigDir),
    });
    return {
      target,
      cleanup: async () => {
        await target.close();
        await registry.stop();
      },
    };
  });
}

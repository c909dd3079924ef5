import { dockerConfigCredentials, RegistryTarget } from '@splinter/oci';
import { startRegistry } from '@splinter/testkit';

const reg = await startRegistry({ auth: 'token' });
console.log('started', reg.host);
try {
  const t = new RegistryTarget({
    registry: reg.host,
    repository: 'a/b',
    plainHttp: true,
    credentials: dockerConfigCredentials(reg.dockerConfigDir),
    retry: { maxAttempts: 2, baseDelayMs: 10 },
  });
  console.log(
    await t.exists({
      mediaType: 'x',
      digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
      size: 2,
    }),
  );
  await t.push(
    {
      mediaType: 'application/vnd.oci.empty.v1+json',
      digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
      size: 2,
    },
    Buffer.from('{}'),
  );
  console.log('pushed', reg.tokenService?.requests);
  await t.close();
} catch (e) {
  console.error('ERR', e);
}
await reg.stop();

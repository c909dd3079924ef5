import { randomBytes } from 'node:crypto';
import { type Descriptor, descriptorFor, MediaType, RegistryTarget, readAllLimited } from '@splintertree/oci';
import { errorCodeOf, type HugeBodyServer, startHugeBodyServer } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const HOSTILE_BODY_BYTES = 400 * 1024 * 1024;
/** Bytes the server may get into socket buffers before the client stops reading: far below the body. */
const MAX_BYTES_TAKEN = 16 * 1024 * 1024;
const MAX_RSS_GROWTH = 50 * 1024 * 1024;

/** Runs `work` while sampling RSS; returns how far it rose above where it started. */
async function rssGrowthDuring(work: () => Promise<void>): Promise<number> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, process.memoryUsage().rss) - before;
}

describe('response bodies from a hostile registry are read within limits', () => {
  let server: HugeBodyServer;
  beforeAll(async () => {
    server = await startHugeBodyServer({ bytes: HOSTILE_BODY_BYTES });
  });
  afterAll(async () => {
    await server?.stop();
  });

  function target(repository: string): RegistryTarget {
    return new RegistryTarget({
      registry: server.host,
      repository,
      plainHttp: true,
      credentials: async () => undefined,
      retry: { maxAttempts: 1 },
    });
  }

  const blob: Descriptor = descriptorFor('application/octet-stream', randomBytes(100));
  const manifest: Descriptor = { ...descriptorFor(MediaType.ImageManifest, randomBytes(100)) };

  const cases = [
    {
      route: 'error' as const,
      code: 'REGISTRY_ERROR',
      run: (t: RegistryTarget) => (async () => readAllLimited(await t.fetch(blob), 1 << 20))(),
    },
    { route: 'token' as const, code: 'RESPONSE_TOO_LARGE', run: (t: RegistryTarget) => t.resolve('latest') },
    {
      route: 'manifest' as const,
      code: 'MANIFEST_TOO_LARGE',
      run: (t: RegistryTarget) => (async () => readAllLimited(await t.fetch(manifest), 1 << 30))(),
    },
    {
      route: 'referrers' as const,
      code: 'MANIFEST_TOO_LARGE',
      run: (t: RegistryTarget) => t.referrers(manifest),
    },
  ];

  for (const { route, code, run } of cases) {
    it(`stops reading a 400 MiB ${route} body: ${code}, little read, little memory`, async () => {
      const client = target(`huge/${route}`);
      let failure = '';
      try {
        const growth = await rssGrowthDuring(async () => {
          failure = await errorCodeOf(run(client));
        });
        expect(failure).toBe(code);
        expect(server.sent[route]).toBeGreaterThan(0);
        expect(server.sent[route]).toBeLessThan(MAX_BYTES_TAKEN);
        expect(growth).toBeLessThan(MAX_RSS_GROWTH);
      } finally {
        await client.close();
      }
    });
  }
});

import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  descriptorFor,
  dockerConfigCredentials,
  OciLayoutTarget,
  RegistryTarget,
  type RegistryTargetOptions,
  type UploadSession,
} from '@splintertree/oci';
import { errorCodeOf, type RunningRegistry, startFaultProxy, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const FAST_RETRY = { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 2_000, maxElapsedMs: 10_000 };
/** Without the abort, each test below would wait on a stalled peer far past this. */
const PROMPT = 15_000;

function targetFor(host: string, registry: RunningRegistry, extra: Partial<RegistryTargetOptions> = {}) {
  return new RegistryTarget({
    registry: host,
    repository: 'abort/repo',
    plainHttp: true,
    credentials: dockerConfigCredentials(registry.dockerConfigDir),
    retry: FAST_RETRY,
    ...extra,
  });
}

/** A source that hands out `first` bytes of `data`, then stalls until the test ends it. */
function stallingSource(data: Buffer, first: number): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(data.subarray(0, first));
      }
    },
  });
}

/** Notes upload sessions as a journal would: which were opened, and which were closed (cancelled). */
function sessionLog() {
  const opened: UploadSession[] = [];
  let closed = 0;
  return {
    opened,
    closed: () => closed,
    sessions: {
      async opened(session: UploadSession) {
        opened.push(session);
        return {
          moved: async () => {},
          closed: async () => {
            closed += 1;
          },
        };
      },
    },
  };
}

describe('aborting registry transfers (AbortSignal)', () => {
  let registry: RunningRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  for (const mode of ['monolithic', 'chunked'] as const) {
    it(
      `a ${mode} blob push stopped mid-transfer rejects with INTERRUPTED and leaves no blob or session`,
      async () => {
        const log = sessionLog();
        const target = targetFor(registry.host, registry, {
          sessions: log.sessions,
          ...(mode === 'chunked' ? { chunkThreshold: 1024 * 1024, chunkSize: 4 * 1024 * 1024 } : {}),
        });
        const data = randomBytes(8 * 1024 * 1024);
        const desc = descriptorFor('application/octet-stream', data);
        const source = stallingSource(data, 1024 * 1024);
        const controller = new AbortController();
        let moving: () => void = () => {};
        const bytesMoved = new Promise<void>((resolve) => {
          moving = resolve;
        });
        try {
          const pushed = target.push(desc, source, {
            signal: controller.signal,
            onProgress: (done) => {
              if (done > 0) moving();
            },
          });
          await bytesMoved;
          controller.abort();
          expect(await errorCodeOf(pushed)).toBe('INTERRUPTED');
          expect(await target.exists(desc)).toBe(false);
          // The session was cancelled (DELETE), not left for the registry to purge in a week.
          expect(log.opened).toHaveLength(1);
          expect(log.closed()).toBe(1);
          expect(await target.cancelUpload(log.opened[0]!.url)).toBe(true);
        } finally {
          source.destroy();
          await target.close();
        }
      },
      PROMPT,
    );
  }

  it(
    'a blob download stopped mid-transfer rejects with INTERRUPTED, and the store it fed keeps nothing',
    async () => {
      const direct = targetFor(registry.host, registry);
      const data = randomBytes(4 * 1024 * 1024);
      const desc = descriptorFor('application/octet-stream', data);
      await direct.push(desc, data);
      const proxy = await startFaultProxy(registry.host);
      const target = targetFor(proxy.host, registry);
      const dir = await mkdtemp(join(tmpdir(), 'splinter-abort-'));
      try {
        const layout = await OciLayoutTarget.open(dir);
        // The registry's answer stops after 1 MiB and the connection stays open.
        proxy.add({ method: 'GET', path: /\/blobs\//, fault: { kind: 'stall-after', bytes: 1024 * 1024 } });
        const controller = new AbortController();
        const stream = await target.fetch(desc, { signal: controller.signal });
        const stored = layout.push(desc, stream, { verifiedUpstream: true });
        await proxy.seen((request) => request.method === 'GET' && request.held);
        controller.abort();
        expect(await errorCodeOf(stored)).toBe('INTERRUPTED');
        expect(await layout.exists(desc)).toBe(false);
        expect(await readdir(join(dir, 'ingest'))).toEqual([]);
      } finally {
        await target.close();
        await direct.close();
        await proxy.stop();
        await rm(dir, { recursive: true, force: true });
      }
    },
    PROMPT,
  );

  it(
    'cuts a retry wait short: a HEAD told to come back in two minutes rejects as soon as it is aborted',
    async () => {
      const proxy = await startFaultProxy(registry.host);
      const target = targetFor(proxy.host, registry, {
        retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 300_000, maxElapsedMs: 600_000 },
      });
      try {
        proxy.add({
          method: 'HEAD',
          path: /\/manifests\//,
          fault: { kind: 'status', status: 503, headers: { 'retry-after': '120' } },
        });
        const controller = new AbortController();
        const resolved = target.resolve('latest', { signal: controller.signal });
        await proxy.seen((request) => request.method === 'HEAD' && request.status === 503);
        controller.abort();
        expect(await errorCodeOf(resolved)).toBe('INTERRUPTED');
        // A signal aborted already sends nothing.
        const requests = target.stats.requests;
        expect(
          await errorCodeOf(
            target.exists(descriptorFor('application/x', Buffer.from('x')), { signal: controller.signal }),
          ),
        ).toBe('INTERRUPTED');
        expect(target.stats.requests).toBe(requests);
      } finally {
        await target.close();
        await proxy.stop();
      }
    },
    PROMPT,
  );
});

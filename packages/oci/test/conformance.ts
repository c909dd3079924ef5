import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { isSplinterError } from '@splintertree/errors';
import {
  type Descriptor,
  descriptorFor,
  EMPTY_JSON,
  type ImageManifest,
  MediaType,
  type RangeReadable,
  readAllLimited,
  sha256Digest,
  type Target,
} from '@splintertree/oci';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

export interface ConformanceSetup {
  target: Target & RangeReadable;
  cleanup(): Promise<void>;
}

export function manifestFor(layers: Descriptor[], extra: Partial<ImageManifest> = {}) {
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    artifactType: 'application/vnd.example.test.v1',
    config: descriptorFor(MediaType.Empty, EMPTY_JSON),
    layers,
    ...extra,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { manifest, bytes, descriptor: descriptorFor(MediaType.ImageManifest, bytes) };
}

async function readAll(target: Target, desc: Descriptor): Promise<Buffer> {
  return readAllLimited(await target.fetch(desc), 512 * 1024 * 1024);
}

async function rejectsWithCode(promise: Promise<unknown>, codes: string[]): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected a rejection').toBeDefined();
  expect(isSplinterError(error), String(error)).toBe(true);
  expect(codes).toContain((error as { code: string }).code);
}

/** The behaviour every store must share; run once per store. */
export function describeTargetConformance(name: string, setup: () => Promise<ConformanceSetup>): void {
  describe(`Target conformance: ${name}`, () => {
    let context: ConformanceSetup;
    let target: Target & RangeReadable;
    beforeAll(async () => {
      context = await setup();
      target = context.target;
    });
    afterAll(async () => {
      await context?.cleanup();
    });

    it('stores a blob and returns the same bytes', async () => {
      const data = randomBytes(70_000);
      const desc = descriptorFor('application/octet-stream', data);
      expect(await target.exists(desc)).toBe(false);
      await target.push(desc, Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
      expect(await target.exists(desc)).toBe(true);
      expect((await readAll(target, desc)).equals(data)).toBe(true);
    });

    it('refuses content whose digest does not match, and keeps nothing', async () => {
      const data = randomBytes(4096);
      const lie = {
        ...descriptorFor('application/octet-stream', data),
        digest: sha256Digest(randomBytes(8)),
      };
      await rejectsWithCode(target.push(lie, data), ['DIGEST_MISMATCH']);
      expect(await target.exists(lie)).toBe(false);
    });

    it('refuses content whose size does not match, and keeps nothing', async () => {
      const data = randomBytes(4096);
      const wrongSize = { ...descriptorFor('application/octet-stream', data), size: 4000 };
      await rejectsWithCode(target.push(wrongSize, data), ['SIZE_MISMATCH']);
      expect(await target.exists(wrongSize)).toBe(false);
    });

    it('answers an unknown blob with a not-found code', async () => {
      const unknown = descriptorFor('application/octet-stream', randomBytes(32));
      expect(await target.exists(unknown)).toBe(false);
      await rejectsWithCode(
        (async () => {
          const stream = await target.fetch(unknown);
          await readAllLimited(stream, 1024);
        })(),
        ['BLOB_UNKNOWN', 'NOT_FOUND'],
      );
    });

    it('reads byte ranges of a blob: first byte, last byte, middle, whole', async () => {
      const data = randomBytes(300_000);
      const desc = descriptorFor('application/octet-stream', data);
      await target.push(desc, data);
      const ranges: Array<[number, number]> = [
        [0, 1],
        [data.length - 1, data.length],
        [1, 4097],
        [123_457, 234_568],
        [0, data.length],
      ];
      for (const [start, end] of ranges) {
        const read = await target.fetchRange(desc, start, end);
        expect(read.kind, `${start}-${end}`).toBe('range');
        const bytes = await readAllLimited(read.stream, data.length);
        expect(bytes.equals(data.subarray(start, end)), `bytes ${start}-${end}`).toBe(true);
      }
    });

    it('refuses a byte range outside the blob, and a range of an unknown blob', async () => {
      const data = randomBytes(1000);
      const desc = descriptorFor('application/octet-stream', data);
      await target.push(desc, data);
      for (const [start, end] of [
        [0, 1001],
        [1000, 1001],
        [-1, 10],
        [10, 10],
        [20, 10],
        [0.5, 10],
      ] as Array<[number, number]>) {
        await rejectsWithCode(target.fetchRange(desc, start, end), ['INVALID_ARGUMENT']);
      }
      const unknown = descriptorFor('application/octet-stream', randomBytes(64));
      await rejectsWithCode(
        (async () => readAllLimited((await target.fetchRange(unknown, 0, 10)).stream, 1024))(),
        ['BLOB_UNKNOWN', 'NOT_FOUND'],
      );
    });

    it('pushes a manifest, tags it, resolves tag and digest, and retags', async () => {
      const layer = randomBytes(1234);
      const layerDesc = descriptorFor('application/vnd.example.layer', layer);
      await target.push(descriptorFor(MediaType.Empty, EMPTY_JSON), EMPTY_JSON);
      await target.push(layerDesc, layer);
      const first = manifestFor([layerDesc]);
      await target.push(first.descriptor, first.bytes);
      await target.tag(first.descriptor, 'v1');
      expect((await target.resolve('v1')).digest).toBe(first.descriptor.digest);
      expect((await target.resolve(first.descriptor.digest)).size).toBe(first.bytes.byteLength);
      expect((await readAll(target, first.descriptor)).equals(first.bytes)).toBe(true);

      const second = manifestFor([layerDesc], { annotations: { n: '2' } });
      await target.push(second.descriptor, second.bytes);
      await target.tag(second.descriptor, 'v1');
      expect((await target.resolve('v1')).digest).toBe(second.descriptor.digest);
      await rejectsWithCode(target.resolve('never-pushed'), ['NOT_FOUND', 'MANIFEST_UNKNOWN']);
    });

    it('refuses a malformed manifest', async () => {
      const bytes = Buffer.from('{"schemaVersion":2,"layers":"nope"}');
      await rejectsWithCode(target.push(descriptorFor(MediaType.ImageManifest, bytes), bytes), [
        'MANIFEST_INVALID',
      ]);
    });

    it('lists referrers of a subject, filtered by artifact type', async () => {
      const layer = randomBytes(100);
      const layerDesc = descriptorFor('application/vnd.example.layer', layer);
      await target.push(layerDesc, layer);
      const subject = manifestFor([layerDesc], { annotations: { role: 'subject' } });
      await target.push(subject.descriptor, subject.bytes);
      const sig = manifestFor([layerDesc], {
        artifactType: 'application/vnd.example.sig',
        subject: subject.descriptor,
        annotations: { who: 'a' },
      });
      const sbom = manifestFor([layerDesc], {
        artifactType: 'application/vnd.example.sbom',
        subject: subject.descriptor,
      });
      await target.push(sig.descriptor, sig.bytes);
      await target.push(sbom.descriptor, sbom.bytes);
      const all = await target.referrers(subject.descriptor);
      expect(all.map((d) => d.digest).sort()).toEqual([sig.descriptor.digest, sbom.descriptor.digest].sort());
      const sigs = await target.referrers(subject.descriptor, 'application/vnd.example.sig');
      expect(sigs.map((d) => d.digest)).toEqual([sig.descriptor.digest]);
      expect(sigs[0]?.annotations?.who).toBe('a');
      expect(await target.referrers(layerDesc)).toEqual([]);
    });

    it('takes the same blob pushed concurrently', async () => {
      const data = randomBytes(300_000);
      const desc = descriptorFor('application/octet-stream', data);
      await Promise.all(Array.from({ length: 4 }, () => target.push(desc, data)));
      expect((await readAll(target, desc)).equals(data)).toBe(true);
    });

    it('streams a 64 MiB blob without holding it in memory', async () => {
      const size = 64 * 1024 * 1024;
      const chunk = randomBytes(1024 * 1024);
      const { createHash } = await import('node:crypto');
      const hash = createHash('sha256');
      for (let i = 0; i < 64; i++) hash.update(chunk);
      const desc: Descriptor = {
        mediaType: 'application/octet-stream',
        digest: `sha256:${hash.digest('hex')}`,
        size,
      };
      const source = Readable.from(
        (function* () {
          for (let i = 0; i < 64; i++) yield chunk;
        })(),
      );
      const before = process.memoryUsage().rss;
      let peak = before;
      const timer = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 5);
      try {
        await target.push(desc, source);
        let received = 0;
        for await (const part of await target.fetch(desc)) received += (part as Buffer).byteLength;
        expect(received).toBe(size);
      } finally {
        clearInterval(timer);
      }
      // The memory store keeps blobs in memory by design; every other store must stream.
      if (target.location !== 'memory') expect(peak - before).toBeLessThan(48 * 1024 * 1024);
    });
  });
}

import { randomBytes } from 'node:crypto';
import {
  type Descriptor,
  descriptorFor,
  dockerConfigCredentials,
  MAX_REDIRECT_RENEWALS,
  RegistryTarget,
  readAllLimited,
} from '@splintertree/oci';
import {
  errorCodeOf,
  type FaultProxy,
  type ProxyRequest,
  type RunningRegistry,
  startFaultProxy,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const FAST_RETRY = { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 2_000, maxElapsedMs: 10_000 };
const BLOB_GET = /\/blobs\/sha256:/;
const REPOSITORY = 'ranges/packs';

describe('blob range reads against CNCF Distribution', () => {
  let registry: RunningRegistry;
  let data: Buffer;
  let desc: Descriptor;
  let proxy: FaultProxy;
  let target: RegistryTarget;

  beforeAll(async () => {
    registry = await startRegistry();
    data = randomBytes(3 * 1024 * 1024 + 17);
    desc = descriptorFor('application/octet-stream', data);
    const direct = new RegistryTarget({ registry: registry.host, repository: REPOSITORY, plainHttp: true });
    await direct.push(desc, data);
    await direct.close();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  async function throughProxy(): Promise<void> {
    proxy = await startFaultProxy(registry.host);
    target = new RegistryTarget({
      registry: proxy.host,
      repository: REPOSITORY,
      plainHttp: true,
      credentials: dockerConfigCredentials(registry.dockerConfigDir),
      retry: FAST_RETRY,
    });
  }
  afterEach(async () => {
    await target?.close();
    await proxy?.stop();
  });

  async function read(start: number, end: number) {
    const result = await target.fetchRange(desc, start, end);
    return { kind: result.kind, bytes: await readAllLimited(result.stream, 16 * 1024 * 1024) };
  }

  /** Blob requests as `<listener> <status> <Range>`, in order. */
  function blobRequests(): string[] {
    return proxy.log
      .filter((entry) => entry.listener === 'storage' || BLOB_GET.test(entry.path))
      .map((entry) => `${entry.listener} ${entry.status} ${entry.range ?? '-'}`);
  }

  it('answers 206 with exactly the bytes asked for, at several offsets and the last byte', async () => {
    await throughProxy();
    const ranges: Array<[number, number]> = [
      [0, 1],
      [0, 65_536],
      [1_000_003, 1_400_000],
      [data.length - 100_000, data.length],
      [data.length - 1, data.length],
    ];
    for (const [start, end] of ranges) {
      const { kind, bytes } = await read(start, end);
      expect(kind).toBe('range');
      expect(bytes.equals(data.subarray(start, end)), `bytes ${start}-${end - 1}`).toBe(true);
    }
    // One request each, and the wire carried no byte more than asked for.
    const gets = proxy.log.filter((entry) => BLOB_GET.test(entry.path));
    expect(gets.map((entry) => entry.range)).toEqual(ranges.map(([s, e]) => `bytes=${s}-${e - 1}`));
    expect(gets.map((entry) => entry.status)).toEqual(ranges.map(() => 206));
    expect(gets.map((entry) => entry.bytes)).toEqual(ranges.map(([s, e]) => e - s));
  });

  it('takes the whole blob when the registry ignores Range (200)', async () => {
    await throughProxy();
    proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'ignore-range' } });
    const { kind, bytes } = await read(500_000, 600_000);
    expect(kind).toBe('whole');
    expect(bytes.equals(data)).toBe(true);
    expect(blobRequests()).toEqual(['registry 200 bytes=500000-599999']);
  });

  for (const status of [416, 400]) {
    it(`asks again without Range when a ranged request is answered ${status}`, async () => {
      await throughProxy();
      proxy.add({ method: 'GET', path: BLOB_GET, range: true, fault: { kind: 'status', status } });
      const { kind, bytes } = await read(10, 20);
      expect(kind).toBe('whole');
      expect(bytes.equals(data)).toBe(true);
      expect(blobRequests()).toEqual([`registry ${status} bytes=10-19`, 'registry 200 -']);
    });
  }

  it('verifies the whole blob it falls back to', async () => {
    await throughProxy();
    proxy.add({ method: 'GET', path: BLOB_GET, range: true, fault: { kind: 'status', status: 416 } });
    proxy.add({ method: 'GET', path: BLOB_GET, range: false, fault: { kind: 'corrupt', offset: 2_000_000 } });
    const result = await target.fetchRange(desc, 10, 20);
    expect(result.kind).toBe('whole');
    expect(await errorCodeOf(readAllLimited(result.stream, 16 * 1024 * 1024))).toBe('DIGEST_MISMATCH');
  });

  it('reads ranges through a redirect to storage, and renews the storage URL once it has expired', async () => {
    await throughProxy();
    proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'redirect', uses: 1 } });
    expect((await read(100, 200)).bytes.equals(data.subarray(100, 200))).toBe(true);
    // The second read tries the storage URL the first one used; it is spent, so the registry is asked again.
    expect((await read(2_000_000, 2_100_000)).bytes.equals(data.subarray(2_000_000, 2_100_000))).toBe(true);
    expect(blobRequests()).toEqual([
      'registry 307 bytes=100-199',
      'storage 206 bytes=100-199',
      'storage 403 bytes=2000000-2099999',
      'registry 307 bytes=2000000-2099999',
      'storage 206 bytes=2000000-2099999',
    ]);
    expect(target.stats.redirectRenewals).toBe(1);
  });

  it('renews a storage URL that was expired when handed out, for whole fetches too', async () => {
    await throughProxy();
    proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'redirect', expired: true }, times: 1 });
    proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'redirect' } });
    expect((await read(7, 9)).bytes.equals(data.subarray(7, 9))).toBe(true);
    expect(blobRequests()).toEqual([
      'registry 307 bytes=7-8',
      'storage 403 bytes=7-8',
      'registry 307 bytes=7-8',
      'storage 206 bytes=7-8',
    ]);
    proxy.expireStorageUrls();
    expect((await readAllLimited(await target.fetch(desc), 16 * 1024 * 1024)).equals(data)).toBe(true);
    expect(blobRequests().slice(4)).toEqual(['storage 403 -', 'registry 307 -', 'storage 200 -']);
    expect(target.stats.redirectRenewals).toBe(2);
  });

  it('fails with REDIRECT_REFUSED when the storage URLs never serve', async () => {
    await throughProxy();
    proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'redirect', expired: true } });
    expect(await errorCodeOf(target.fetchRange(desc, 0, 10))).toBe('REDIRECT_REFUSED');
    const attempts = MAX_REDIRECT_RENEWALS + 1;
    expect(blobRequests()).toEqual(
      Array.from({ length: attempts }, () => ['registry 307 bytes=0-9', 'storage 403 bytes=0-9']).flat(),
    );
  });

  it('resumes a range after the connection drops mid-range, asking only for the rest', async () => {
    await throughProxy();
    const [start, end] = [100_000, 2_500_000];
    proxy.add({
      method: 'GET',
      path: BLOB_GET,
      range: true,
      fault: { kind: 'reset-after', bytes: 600_000 },
      times: 2,
    });
    const { kind, bytes } = await read(start, end);
    expect(kind).toBe('range');
    expect(bytes.equals(data.subarray(start, end))).toBe(true);
    expect(target.stats.resumes).toBe(2);
    const asked = proxy.log.filter((entry) => BLOB_GET.test(entry.path)).map(rangeOf);
    expect(asked).toHaveLength(3);
    expect(asked[0]).toEqual({ start, last: end - 1 });
    // Each resume starts where the bytes that got through ended, and never asks past the range.
    expect(asked[1]!.start).toBeGreaterThan(start);
    expect(asked[1]!.start).toBeLessThanOrEqual(start + 600_000);
    expect(asked[2]!.start).toBeGreaterThan(asked[1]!.start);
    expect(asked.every((range) => range.last === end - 1)).toBe(true);
  });

  it('resumes through storage whose URL expired in between, by renewing it', async () => {
    await throughProxy();
    proxy.add({ path: /^\/_storage\//, fault: { kind: 'reset-after', bytes: 400_000 }, times: 1 });
    proxy.add({ method: 'GET', path: BLOB_GET, fault: { kind: 'redirect', uses: 1 } });
    const { bytes } = await read(0, 2_000_000);
    expect(bytes.equals(data.subarray(0, 2_000_000))).toBe(true);
    expect(target.stats.resumes).toBe(1);
    expect(target.stats.redirectRenewals).toBe(1);
    expect(blobRequests().map((line) => line.split(' ').slice(0, 2).join(' '))).toEqual([
      'registry 307',
      'storage 206',
      'storage 403',
      'registry 307',
      'storage 206',
    ]);
  });
});

function rangeOf(entry: ProxyRequest): { start: number; last: number } {
  const match = /^bytes=(\d+)-(\d+)$/.exec(entry.range ?? '');
  if (!match) throw new Error(`not a single closed range: ${entry.range}`);
  return { start: Number(match[1]), last: Number(match[2]) };
}

import { type Readable, Transform } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import {
  type Descriptor,
  isRangeReadable,
  type RangeReadable,
  runLimited,
  type Target,
} from '@splintertree/oci';
import { ChunkedMediaType, type ChunkRef, type PackEntry } from './format.js';
import type { PackCache } from './pack-cache.js';

/** Records closer than this are fetched in one range: a gap costs less than another round trip. */
export const MERGE_GAP_BYTES = 64 * 1024;
/** One ranged request reads at most this much, so parallel requests share the work. */
export const MAX_SPAN_BYTES = 8 * 1024 * 1024;

export interface FetchStats {
  requests: number;
  bytes: number;
  /** Packs read whole because the registry would not serve a range. */
  wholePacks: number;
}

export interface RecordSourceOptions {
  cache: PackCache;
  /** Where the packs live; undefined when everything must already be cached. */
  remote?: (Target & Partial<RangeReadable>) | undefined;
  packs: Map<number, PackEntry>;
  concurrency: number;
  onBytes?: ((bytes: number) => void) | undefined;
}

/**
 * Makes records available in the pack cache: the ones missing are sorted by pack and offset, merged
 * into single-range requests where they are close, and fetched a few at a time. A registry that answers
 * a range with the whole pack (or refuses ranges) gets the pack read whole, once.
 */
export async function fetchRecords(
  refs: Iterable<ChunkRef>,
  options: RecordSourceOptions,
): Promise<FetchStats> {
  const stats: FetchStats = { requests: 0, bytes: 0, wholePacks: 0 };
  const byPack = new Map<number, Array<[number, number]>>();
  const seen = new Set<string>();
  for (const ref of refs) {
    const key = `${ref.pack}:${ref.offset}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const pack = packOf(options.packs, ref);
    if (await options.cache.has(pack.digest, ref.offset, ref.offset + ref.storedLength)) continue;
    const list = byPack.get(ref.pack) ?? [];
    byPack.set(ref.pack, list);
    list.push([ref.offset, ref.offset + ref.storedLength]);
  }
  if (byPack.size === 0) return stats;
  if (!options.remote) {
    throw new SplinterError('BLOB_UNKNOWN', `${seen.size} records are neither cached nor fetchable`);
  }
  const jobs: Array<{ pack: PackEntry; start: number; end: number }> = [];
  for (const [number, spans] of byPack) {
    const pack = options.packs.get(number)!;
    for (const [start, end] of mergeSpans(spans)) jobs.push({ pack, start, end });
  }
  const whole = new Map<number, Promise<void>>();
  const remote = options.remote;
  await runLimited(jobs, options.concurrency, async ({ pack, start, end }) => {
    const pending = whole.get(pack.number);
    if (pending) return pending;
    const desc = packDescriptor(pack);
    if (!isRangeReadable(remote)) {
      const read = fetchWholePack(remote, pack, options, stats);
      whole.set(pack.number, read);
      return read;
    }
    stats.requests += 1;
    const answer = await remote.fetchRange(desc, start, end);
    if (answer.kind === 'whole') {
      const read = options.cache
        .writeWhole(pack.digest, pack.size, counted(answer.stream, options, stats))
        .then(() => {
          stats.wholePacks += 1;
        });
      whole.set(pack.number, read);
      return read;
    }
    await options.cache.writeRange(pack.digest, start, end, counted(answer.stream, options, stats));
  });
  return stats;
}

/** Codes of a cached record that is not what its ref names: damaged (or lost) on disk, or a bad download. */
const DAMAGED = new Set(['DIGEST_MISMATCH', 'SIZE_MISMATCH', 'DECRYPTION_FAILED', 'BLOB_UNKNOWN']);

/**
 * A record read from the cache and decoded by `decode` (which checks it). One that fails its check is
 * unlisted by the cache and, when the remote is known, fetched once more and read again: a cache that
 * lost bytes to a power cut, or holds a damaged range, heals on the next read instead of failing the
 * install. A second failure is the remote's, and goes on.
 */
export async function readRecordHealing<T>(
  ref: ChunkRef,
  options: RecordSourceOptions,
  decode: (stored: Buffer) => Promise<T>,
  /** Where the download of a healed record is counted. */
  stats?: FetchStats,
): Promise<T> {
  const pack = packOf(options.packs, ref);
  const read = () => options.cache.readRecord(pack.digest, ref.offset, ref.storedLength, decode);
  try {
    return await read();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (!options.remote || typeof code !== 'string' || !DAMAGED.has(code)) throw error;
    const healed = await fetchRecords([ref], options);
    if (stats) for (const key of Object.keys(stats) as Array<keyof FetchStats>) stats[key] += healed[key];
    return read();
  }
}

/** Reads a whole pack into the cache (a registry without ranges, a preload staged before its key). */
export async function fetchWholePack(
  remote: Target,
  pack: PackEntry | Descriptor,
  options: Pick<RecordSourceOptions, 'cache' | 'onBytes'>,
  stats: FetchStats,
): Promise<void> {
  stats.requests += 1;
  stats.wholePacks += 1;
  const desc = 'number' in pack ? packDescriptor(pack) : pack;
  await options.cache.writeWhole(desc.digest, desc.size, counted(await remote.fetch(desc), options, stats));
}

function counted(
  stream: Readable,
  options: Pick<RecordSourceOptions, 'onBytes'>,
  stats: FetchStats,
): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      stats.bytes += chunk.byteLength;
      options.onBytes?.(chunk.byteLength);
      done(null, chunk);
    },
  });
  stream.on('error', (error) => counter.destroy(error));
  // A consumer that stops early (a full disk) releases the download, or its connection is held open.
  counter.on('close', () => {
    if (!stream.readableEnded) stream.destroy();
  });
  return stream.pipe(counter);
}

export function packDescriptor(pack: PackEntry): Descriptor {
  return { mediaType: ChunkedMediaType.Pack, digest: pack.digest, size: pack.size };
}

export function packOf(packs: Map<number, PackEntry>, ref: ChunkRef): PackEntry {
  const pack = packs.get(ref.pack);
  if (!pack)
    throw new SplinterError(
      'ARCHIVE_INVALID',
      `chunk ${ref.id.toString('hex')} names unknown pack ${ref.pack}`,
    );
  return pack;
}

/** Sorted, merged spans: neighbours closer than MERGE_GAP_BYTES join while a span stays under MAX_SPAN_BYTES. */
export function mergeSpans(spans: Array<[number, number]>): Array<[number, number]> {
  const sorted = spans.slice().sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [start, end] of sorted) {
    const last = out.at(-1);
    if (last && start - last[1] <= MERGE_GAP_BYTES && Math.max(end, last[1]) - last[0] <= MAX_SPAN_BYTES) {
      last[1] = Math.max(last[1], end);
    } else out.push([start, end]);
  }
  return out;
}

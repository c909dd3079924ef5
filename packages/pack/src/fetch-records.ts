import { type Readable, Transform } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import {
  abortable,
  addTransferStats,
  type Descriptor,
  emptyTransferStats,
  interruptedError,
  isRangeReadable,
  type ProgressListener,
  type RangeReadable,
  runLimited,
  type Target,
  type TransferStats,
  throwIfAborted,
} from '@splintertree/oci';
import { ChunkedMediaType, type ChunkRef, type PackEntry } from './format.js';
import type { PackCache } from './pack-cache.js';

/** Records closer than this are fetched in one range: a gap costs less than another round trip. */
export const MERGE_GAP_BYTES = 64 * 1024;
/** One ranged request reads at most this much, so parallel requests share the work. */
const MAX_SPAN_BYTES = 8 * 1024 * 1024;

/**
 * What a fetch of records did, in the words a push uses too: `transferred` and `reused` count records
 * (downloaded, or found in the cache), `bytes` the pack bytes downloaded (merge gaps and whole packs
 * included), `reusedBytes` the stored bytes of the cached records; `mounted` is always 0.
 */
export type FetchStats = TransferStats;

export interface RecordSourceOptions {
  cache: PackCache;
  /** Where the packs live; undefined when everything must already be cached. */
  remote?: (Target & Partial<RangeReadable>) | undefined;
  packs: Map<number, PackEntry>;
  concurrency: number;
  /** `planned` with the bytes to download once they are known, then `bytes` as they arrive. */
  onProgress?: ProgressListener | undefined;
  /**
   * Stops the fetch: no new request starts, the downloads under way are cut short, and it rejects with
   * INTERRUPTED once they have settled. The cache lists nothing cut short (a range is listed only once
   * all of it is written and synced, a whole pack is renamed in only when complete).
   */
  signal?: AbortSignal | undefined;
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
  return (await planFetch(refs, options)).run();
}

/** A fetch planned but not yet run: what `run` downloads, and when each record can be read. */
export interface PlannedFetch {
  /** Downloads the missing records; the stats once every one is cached. */
  run(): Promise<FetchStats>;
  /**
   * Settles once `ref` can be read from the cache: at once for a record cached before, else when the
   * request holding it has written and listed it (so an install writes files while later ranges are
   * still arriving). Rejects with the error that stopped the request, or the fetch, first.
   */
  cached(ref: ChunkRef): Promise<void>;
}

interface FetchJob {
  pack: PackEntry;
  start: number;
  end: number;
  settled: Promise<void>;
  settle(error?: unknown): void;
}

/** Plans a fetch (which records are cached, which ranges to request) without downloading a byte. */
export async function planFetch(
  refs: Iterable<ChunkRef>,
  options: RecordSourceOptions,
): Promise<PlannedFetch> {
  const stats: FetchStats = emptyTransferStats();
  const { signal } = options;
  throwIfAborted(signal);
  const byPack = new Map<number, Array<[number, number]>>();
  const seen = new Set<string>();
  let missing = 0;
  for (const ref of refs) {
    const key = `${ref.pack}:${ref.offset}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const pack = packOf(options.packs, ref);
    if (await options.cache.has(pack.digest, ref.offset, ref.offset + ref.storedLength)) {
      stats.reused += 1;
      stats.reusedBytes += ref.storedLength;
      continue;
    }
    missing += 1;
    const list = byPack.get(ref.pack) ?? [];
    byPack.set(ref.pack, list);
    list.push([ref.offset, ref.offset + ref.storedLength]);
  }
  if (byPack.size === 0) return { run: async () => stats, cached: async () => undefined };
  if (!options.remote) {
    throw new SplinterError('BLOB_UNKNOWN', `${seen.size} records are neither cached nor fetchable`);
  }
  const jobs: FetchJob[] = [];
  /** Each pack's jobs in offset order, for `cached`. */
  const jobsOfPack = new Map<number, FetchJob[]>();
  for (const [number, spans] of byPack) {
    const pack = options.packs.get(number)!;
    const list: FetchJob[] = [];
    jobsOfPack.set(number, list);
    for (const [start, end] of mergeSpans(spans)) {
      let settle!: FetchJob['settle'];
      const settled = new Promise<void>((resolve, reject) => {
        settle = (error) => (error === undefined ? resolve() : reject(error));
      });
      settled.catch(() => undefined); // awaited by `cached`, or by no one
      const job = { pack, start, end, settled, settle };
      jobs.push(job);
      list.push(job);
    }
  }
  const remote = options.remote;
  const cached = (ref: ChunkRef): Promise<void> => {
    const list = jobsOfPack.get(ref.pack);
    if (!list) return Promise.resolve();
    let low = 0;
    let high = list.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const job = list[middle]!;
      if (ref.offset < job.start) high = middle - 1;
      else if (ref.offset >= job.end) low = middle + 1;
      else return job.settled;
    }
    return Promise.resolve();
  };
  const run = async (): Promise<FetchStats> => {
    // A store without ranges is read a pack at a time: the plan is those packs.
    options.onProgress?.({
      type: 'planned',
      bytes: isRangeReadable(remote)
        ? jobs.reduce((sum, job) => sum + job.end - job.start, 0)
        : [...byPack.keys()].reduce((sum, number) => sum + options.packs.get(number)!.size, 0),
    });
    const whole = new Map<number, Promise<void>>();
    try {
      await runLimited(
        jobs,
        options.concurrency,
        async (job) => {
          const fetched = fetchJob(job, remote, whole, options, stats);
          fetched.then(
            () => job.settle(),
            (error: unknown) => job.settle(error),
          );
          return fetched;
        },
        signal,
      );
    } catch (error) {
      // Jobs never started settle with the error that stopped the fetch.
      for (const job of jobs) job.settle(error);
      throw error;
    }
    stats.transferred += missing;
    return stats;
  };
  return { run, cached };
}

function fetchJob(
  { pack, start, end }: FetchJob,
  remote: Target & Partial<RangeReadable>,
  whole: Map<number, Promise<void>>,
  options: RecordSourceOptions,
  stats: FetchStats,
): Promise<void> {
  const { signal } = options;
  const pending = whole.get(pack.number);
  if (pending) return pending;
  if (!isRangeReadable(remote)) {
    const read = fetchWholePack(remote, pack, options, stats, true);
    whole.set(pack.number, read);
    return read;
  }
  stats.requests += 1;
  return abortable(signal, async () => {
    const answer = await remote.fetchRange(packDescriptor(pack), start, end, signal ? { signal } : undefined);
    if (answer.kind === 'whole') {
      // More than planned: the rest of the pack comes too.
      options.onProgress?.({ type: 'planned', bytes: pack.size - (end - start) });
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
    if (stats) addTransferStats(stats, healed);
    return read();
  }
}

/** Reads a whole pack into the cache (a registry without ranges, a preload staged before its key). */
export async function fetchWholePack(
  remote: Target,
  pack: PackEntry | Descriptor,
  options: Pick<RecordSourceOptions, 'cache' | 'onProgress' | 'signal'>,
  stats: FetchStats,
  planned = false,
): Promise<void> {
  const { signal } = options;
  throwIfAborted(signal);
  stats.requests += 1;
  stats.wholePacks += 1;
  const desc = 'number' in pack ? packDescriptor(pack) : pack;
  if (!planned) options.onProgress?.({ type: 'planned', bytes: desc.size });
  await abortable(signal, async () =>
    options.cache.writeWhole(
      desc.digest,
      desc.size,
      counted(await remote.fetch(desc, signal ? { signal } : undefined), options, stats),
    ),
  );
}

/**
 * Counts a download's bytes as they pass; an abort of `options.signal` destroys both ends, so the
 * cache write fails and keeps nothing.
 */
function counted(
  stream: Readable,
  options: Pick<RecordSourceOptions, 'onProgress' | 'signal'>,
  stats: FetchStats,
): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      stats.bytes += chunk.byteLength;
      options.onProgress?.({ type: 'bytes', bytes: chunk.byteLength });
      done(null, chunk);
    },
  });
  const { signal } = options;
  if (signal) {
    // An abort may come before the cache has started reading (it is still opening its file): the
    // error is kept for that read, not thrown as uncaught.
    counter.on('error', () => undefined);
    const stop = () => counter.destroy(interruptedError(signal));
    if (signal.aborted) stop();
    else {
      signal.addEventListener('abort', stop, { once: true });
      counter.on('close', () => signal.removeEventListener('abort', stop));
    }
  }
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

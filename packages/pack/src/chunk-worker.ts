import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { type ChunkerOptions, nextCut } from '@splintertree/cdc';
import { SplinterError } from '@splintertree/errors';
import {
  BATCH_BYTES,
  type ChunkBatch,
  CompressionHint,
  CREDITS_PER_JOB,
  chunkFacts,
  hashFile,
  type PoolRequest,
  type PoolResponse,
} from './chunk-jobs.js';

/**
 * A chunking worker: cuts files, names each chunk by its SHA-256 and samples whether it compresses,
 * and hashes whole pack files, so that the publisher's thread only places records. Jobs run one at a
 * time in the order sent; a file's batches wait for credits from the publisher, so memory holds at
 * most CREDITS_PER_JOB batches per worker whatever the file's size.
 */
const port = parentPort;
if (!port) throw new Error('chunk-worker runs as a worker thread');

const credits = new Map<number, number>();
const waiting = new Map<number, () => void>();
const queue: PoolRequest[] = [];
/**
 * Buffers of full batches the publisher is done with: a 1 GiB push would otherwise leave 1 GiB of
 * transferred buffers for its garbage collector (measured: 5 s of GC on a loaded machine).
 */
const spares: ArrayBuffer[] = [];
let running = false;

port.on('message', (message: PoolRequest) => {
  if (message.type === 'credit') {
    if (message.spare && spares.length < CREDITS_PER_JOB + 1) spares.push(message.spare);
    // A credit for a batch of a file already done (its last batch went first) is dropped.
    if (!credits.has(message.job)) return;
    credits.set(message.job, credits.get(message.job)! + 1);
    waiting.get(message.job)?.();
    return;
  }
  if (message.type === 'hash') {
    // Beside the file being chunked: a pack's upload waits for its digest.
    void run(message.job, () => hashOne(message.job, message.path));
    return;
  }
  queue.push(message);
  if (!running) void runQueue();
});

async function runQueue(): Promise<void> {
  running = true;
  for (let job = queue.shift(); job; job = queue.shift()) {
    if (job.type !== 'file') continue;
    const { path, options, size } = job;
    await run(job.job, () => chunkOne(job.job, path, options, size));
  }
  running = false;
}

async function run(job: number, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    const failure = error as NodeJS.ErrnoException;
    post({
      type: 'error',
      job,
      code: error instanceof SplinterError ? error.code : failure.code,
      message: failure.message,
      splinter: error instanceof SplinterError,
      details: error instanceof SplinterError ? error.details : undefined,
    });
  } finally {
    credits.delete(job);
    waiting.delete(job);
  }
}

/**
 * Reads block this thread, not the process: a worker has nothing else to do meanwhile, and 5,000 small
 * files cost 20,000 round trips through libuv's thread pool otherwise (a latency-bound push: the
 * publisher sat idle 73% of the time).
 *
 * Reads the file straight into batch buffers and cuts it there (nextCut, as chunkStream does), so no
 * chunk is copied; the tail after a batch's last cut starts the next batch. A file shorter than a batch
 * gets a buffer of its own size (plus one byte, to see its end in the same buffer).
 */
async function chunkOne(job: number, path: string, options: ChunkerOptions, size: number): Promise<void> {
  credits.set(job, CREDITS_PER_JOB);
  const hint = new CompressionHint();
  const full = BATCH_BYTES + options.maxSize;
  const fd = openForReading(path);
  try {
    let position = 0;
    let carried: Uint8Array | undefined;
    for (;;) {
      // A file that grew since it was walked is read on in full batches.
      const rest = size - position;
      const batchSize = position <= size && rest < BATCH_BYTES ? rest + 1 + (carried?.length ?? 0) : full;
      const batch = newBatch(job, batchSize, full, options);
      if (carried) batch.bytes.set(carried);
      let filled = carried?.length ?? 0;
      let end = false;
      while (filled < batch.bytes.byteLength) {
        const bytesRead = readSync(fd, batch.bytes, filled, batch.bytes.byteLength - filled, position);
        if (bytesRead === 0) {
          end = true;
          break;
        }
        filled += bytesRead;
        position += bytesRead;
      }
      let at = 0;
      while (end ? at < filled : filled - at >= options.maxSize) {
        const length = nextCut(batch.bytes, at, filled, options, end);
        const bytes = batch.bytes.subarray(at, at + length);
        const facts = chunkFacts(hint, bytes);
        batch.lengths[batch.count] = length;
        batch.ids.set(facts.id, batch.count * 32);
        batch.deflate[batch.count] = facts.deflate ? 1 : 0;
        batch.count += 1;
        at += length;
      }
      // Copied before the batch's buffer travels to the publisher.
      carried = end ? undefined : batch.bytes.slice(at, filled);
      await send(batch, end);
      if (end) return;
    }
  } finally {
    closeSync(fd);
  }
}

function openForReading(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SplinterError('NOT_FOUND', `no file at ${path}`, { cause: error, details: { path } });
    }
    throw error;
  }
}

interface OpenBatch {
  job: number;
  bytes: Uint8Array;
  lengths: Uint32Array;
  ids: Uint8Array;
  deflate: Uint8Array;
  count: number;
}

function newBatch(job: number, bytes: number, fullSize: number, options: ChunkerOptions): OpenBatch {
  const spare = bytes === fullSize ? spares.pop() : undefined;
  // Every chunk but a file's last is at least minSize long.
  const most = Math.ceil(bytes / options.minSize) + 1;
  return {
    job,
    bytes: spare ? new Uint8Array(spare) : new Uint8Array(bytes),
    lengths: new Uint32Array(most),
    ids: new Uint8Array(most * 32),
    deflate: new Uint8Array(most),
    count: 0,
  };
}

async function send(batch: OpenBatch, last: boolean): Promise<void> {
  while ((credits.get(batch.job) ?? 0) === 0) {
    await new Promise<void>((resolve) => waiting.set(batch.job, resolve));
  }
  credits.set(batch.job, credits.get(batch.job)! - 1);
  const message: ChunkBatch = {
    type: 'batch',
    job: batch.job,
    bytes: batch.bytes,
    lengths: batch.lengths.slice(0, batch.count),
    ids: batch.ids.slice(0, batch.count * 32),
    deflate: batch.deflate.slice(0, batch.count),
    last,
  };
  const transfer = [message.bytes, message.lengths, message.ids, message.deflate].map(
    (view) => view.buffer as ArrayBuffer,
  );
  port!.postMessage(message, transfer);
}

async function hashOne(job: number, path: string): Promise<void> {
  post({ type: 'hashed', job, digest: await hashFile(path) });
}

function post(message: PoolResponse): void {
  port!.postMessage(message);
}

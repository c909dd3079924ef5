import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { type ChunkerOptions, chunkFile } from '@splintertree/cdc';
import { type ErrorCode, SplinterError } from '@splintertree/errors';
import {
  BATCH_BYTES,
  type ChunkBatch,
  CompressionHint,
  chunkFacts,
  hashFile,
  type PoolRequest,
  type PoolResponse,
} from './chunk-jobs.js';

/** One chunk of a file, named and sampled. `bytes` stays valid until the next chunk is asked for. */
export interface FileChunk {
  offset: number;
  bytes: Uint8Array;
  id: Buffer;
  /** Worth deflating (a sample of it shrank). */
  deflate: boolean;
}

export interface ChunkedFile {
  absolutePath: string;
  size: number;
}

/**
 * Files are chunked ahead of the one being placed, spread over the workers, while they hold at most
 * this many bytes (or files): enough to keep every worker busy on small files, while each big file's
 * batches in flight stay bounded by the credits.
 */
const LOOKAHEAD_BYTES = 16 * 1024 * 1024;
const LOOKAHEAD_FILES = 64;

/**
 * Worker threads by default: one per core, at most four. On a 2-vCPU machine shared with the registry
 * the choice is close: of seven A/B pairs of a 1 GiB push (two threads against none) the threads won
 * four, and took 7.19 s against 8.45 s on their mean, at about 340 MiB peak RSS against 170 MiB
 * (npm run bench -- push prints each run's pair). More cores give the workers cores of their own.
 */
export function defaultChunkThreads(): number {
  return Math.min(4, availableParallelism());
}

/**
 * Chunks files and hashes packs for the publisher. With `threads` > 0 the work runs on worker threads
 * (cutting and SHA-256 are most of a push's CPU); with 0, or when running from TypeScript sources
 * (tests, where no compiled worker exists), on the calling thread. Both give the same chunks.
 */
export abstract class ChunkPool {
  static open(files: readonly ChunkedFile[], options: ChunkerOptions, threads: number): ChunkPool {
    const worker = new URL('./chunk-worker.js', import.meta.url);
    return threads > 0 && import.meta.url.endsWith('.js')
      ? new ThreadedChunkPool(files, options, worker, threads)
      : new InlineChunkPool(files, options);
  }

  /** Worker threads doing the work (0: the calling thread). */
  abstract readonly threads: number;
  /** The chunks of the `index`-th file; files must be asked for in order, each once. */
  abstract chunks(index: number): AsyncGenerator<FileChunk>;
  /** `sha256:<hex>` of a whole file (a closed pack). */
  abstract digestOf(path: string): Promise<`sha256:${string}`>;
  abstract close(): Promise<void>;
}

class InlineChunkPool extends ChunkPool {
  readonly threads = 0;
  constructor(
    private readonly files: readonly ChunkedFile[],
    private readonly options: ChunkerOptions,
  ) {
    super();
  }

  async *chunks(index: number): AsyncGenerator<FileChunk> {
    const hint = new CompressionHint();
    for await (const chunk of chunkFile(this.files[index]!.absolutePath, this.options)) {
      yield { offset: chunk.offset, bytes: chunk.bytes, ...chunkFacts(hint, chunk.bytes) };
    }
  }

  digestOf(path: string): Promise<`sha256:${string}`> {
    return hashFile(path);
  }

  async close(): Promise<void> {}
}

interface JobState {
  batches: ChunkBatch[];
  wake: (() => void) | undefined;
  failure: Error | undefined;
  worker: Worker;
}

class ThreadedChunkPool extends ChunkPool {
  private readonly workers: Worker[] = [];
  private readonly jobs = new Map<number, JobState>();
  private readonly hashes = new Map<
    number,
    { resolve: (digest: `sha256:${string}`) => void; reject: (e: Error) => void }
  >();
  /** Files 0..submitted-1 have been sent to a worker. */
  private submitted = 0;
  private nextHashJob = -1;
  private crashed: Error | undefined;
  private closing = false;

  constructor(
    private readonly files: readonly ChunkedFile[],
    private readonly options: ChunkerOptions,
    script: URL,
    threads: number,
  ) {
    super();
    for (let i = 0; i < threads; i++) {
      // Not the parent's flags: a `--conditions=source` (tests, benches) would resolve TypeScript sources.
      const worker = new Worker(script, { execArgv: [] });
      worker.on('message', (message: PoolResponse) => this.receive(message));
      worker.on('error', (error) => this.fail(error));
      worker.on('exit', (code) => {
        if (!this.closing) this.fail(new Error(`a chunking thread stopped (exit code ${code})`));
      });
      this.workers.push(worker);
    }
  }

  get threads(): number {
    return this.workers.length;
  }

  async *chunks(index: number): AsyncGenerator<FileChunk> {
    this.submitAhead(index);
    const job = this.jobs.get(index)!;
    let offset = 0;
    try {
      for (;;) {
        const batch = await this.nextBatch(job);
        let at = 0;
        for (let i = 0; i < batch.lengths.length; i++) {
          const length = batch.lengths[i]!;
          const id = Buffer.from(batch.ids.buffer, batch.ids.byteOffset + i * 32, 32);
          yield { offset, bytes: batch.bytes.subarray(at, at + length), id, deflate: batch.deflate[i] === 1 };
          at += length;
          offset += length;
        }
        // The batch's chunks are placed (each was copied or written before the next was asked for).
        const spare =
          batch.bytes.byteLength === BATCH_BYTES + this.options.maxSize
            ? (batch.bytes.buffer as ArrayBuffer)
            : undefined;
        const credit: PoolRequest = { type: 'credit', job: batch.last ? -1 : index, spare };
        job.worker.postMessage(credit, spare ? [spare] : []);
        if (batch.last) return;
      }
    } finally {
      this.jobs.delete(index);
    }
  }

  digestOf(path: string): Promise<`sha256:${string}`> {
    const job = this.nextHashJob--;
    const worker = this.workers[-job % this.workers.length]!;
    return new Promise((resolve, reject) => {
      if (this.crashed) return reject(this.crashed);
      this.hashes.set(job, { resolve, reject });
      worker.postMessage({ type: 'hash', job, path } satisfies PoolRequest);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  /** Sends file `index` and those after it to the workers, within the look-ahead. */
  private submitAhead(index: number): void {
    let ahead = 0;
    for (let i = index + 1; i < this.submitted; i++) ahead += this.files[i]!.size;
    for (; this.submitted < this.files.length; this.submitted++) {
      if (this.submitted > index && (ahead >= LOOKAHEAD_BYTES || this.submitted - index > LOOKAHEAD_FILES))
        break;
      if (this.submitted > index) ahead += this.files[this.submitted]!.size;
      const file = this.files[this.submitted]!;
      const worker = this.workers[this.submitted % this.workers.length]!;
      this.jobs.set(this.submitted, { batches: [], wake: undefined, failure: this.crashed, worker });
      const request: PoolRequest = {
        type: 'file',
        job: this.submitted,
        path: file.absolutePath,
        size: file.size,
        options: this.options,
      };
      worker.postMessage(request);
    }
  }

  private async nextBatch(job: JobState): Promise<ChunkBatch> {
    for (;;) {
      const batch = job.batches.shift();
      if (batch) return batch;
      if (job.failure) throw job.failure;
      await new Promise<void>((resolve) => {
        job.wake = resolve;
      });
      job.wake = undefined;
    }
  }

  private receive(message: PoolResponse): void {
    if (message.job < 0) {
      const waiter = this.hashes.get(message.job);
      this.hashes.delete(message.job);
      if (message.type === 'hashed') waiter?.resolve(message.digest);
      else if (message.type === 'error') waiter?.reject(rebuildError(message));
      return;
    }
    const job = this.jobs.get(message.job);
    if (!job) return;
    if (message.type === 'batch') job.batches.push(message);
    else if (message.type === 'error') job.failure = rebuildError(message);
    job.wake?.();
  }

  private fail(error: Error): void {
    this.crashed ??= error;
    for (const job of this.jobs.values()) {
      job.failure ??= error;
      job.wake?.();
    }
    for (const waiter of this.hashes.values()) waiter.reject(error);
    this.hashes.clear();
  }
}

/** The error a worker met, as the calling thread would have thrown it. */
function rebuildError(message: PoolResponse & { type: 'error' }): Error {
  if (message.splinter) {
    return new SplinterError(message.code as ErrorCode, message.message, {
      details: message.details as Record<string, unknown> | undefined,
    });
  }
  return Object.assign(new Error(message.message), { code: message.code });
}

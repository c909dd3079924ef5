import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { type ErrorCode, SplinterError } from '@splinter/errors';
import type { FromGroupWorker, ToGroupWorker, WireError } from './group-protocol.js';
import type { GroupSpec, UnpackResult } from './group-unpack.js';

type Outcome = { result: UnpackResult } | { error: Error };

/**
 * The worker's built module. src/ and dist/ are siblings, so this one URL serves the built package and
 * its TypeScript sources alike (tests and the bench run the sources, after `npm run build`).
 */
const WORKER_URL = new URL('../dist/group-worker.js', import.meta.url);
/**
 * Each running group has a ring of this many bytes shared with the worker: the main thread copies the
 * compressed bytes in and the worker inflates them from there. Memory stays fixed and nothing is
 * allocated per chunk on either thread (transferring a fresh buffer per message left tens of MiB of
 * them awaiting the worker's next full GC).
 */
const RING_BYTES = 1024 * 1024;
/** Bytes copied into the ring before the worker is told: one message per 256 KiB, not per chunk. */
const NOTIFY_BYTES = 256 * 1024;

/**
 * One group being unpacked by a worker thread. The main thread writes the group's compressed bytes and
 * awaits `end()`; on its own failure (a download that breaks off, a digest that does not match) it must
 * await `abort()` before deleting staging, so that no worker write lands after that.
 */
export class GroupJob {
  private readonly ring: Uint8Array;
  /** Ring offset where the next byte goes. */
  private head = 0;
  /** Bytes in the ring not yet taken in by zlib (told or not). */
  private used = 0;
  /** Bytes before `head` that the worker has not been told about yet. */
  private untold = 0;
  private outcome: Outcome | undefined;
  private readonly settled: Promise<void>;
  private resolveSettled!: () => void;
  private wake: (() => void) | undefined;

  constructor(
    private readonly host: WorkerHost,
    readonly id: number,
    readonly buffer: SharedArrayBuffer,
  ) {
    this.ring = new Uint8Array(buffer);
    this.settled = new Promise((resolve) => {
      this.resolveSettled = resolve;
    });
  }

  /** Copies `chunk` into the ring, waiting for room as zlib takes bytes in; throws once the group failed. */
  async write(chunk: Uint8Array): Promise<void> {
    for (let offset = 0; offset < chunk.byteLength; ) {
      this.throwIfFailed();
      const room = Math.min(RING_BYTES - this.used, RING_BYTES - this.head);
      if (room === 0) {
        this.tell();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        continue;
      }
      const length = Math.min(room, chunk.byteLength - offset);
      this.ring.set(chunk.subarray(offset, offset + length), this.head);
      offset += length;
      this.head += length;
      this.used += length;
      this.untold += length;
      if (this.untold >= NOTIFY_BYTES || this.head === RING_BYTES) this.tell();
      if (this.head === RING_BYTES) this.head = 0;
    }
    this.throwIfFailed();
  }

  /** Sends the last bytes; resolves once every entry is on disk. */
  async end(): Promise<UnpackResult> {
    this.throwIfFailed();
    this.tell();
    this.host.post({ type: 'end', id: this.id });
    await this.settled;
    const outcome = this.outcome!;
    if ('error' in outcome) throw outcome.error;
    return outcome.result;
  }

  /** Stops the group; resolves once the worker will write nothing more for it. */
  async abort(): Promise<void> {
    if (this.outcome === undefined) this.host.post({ type: 'abort', id: this.id });
    await this.settled;
  }

  /** From the worker host: zlib has taken in this many bytes, in ring order. */
  acknowledged(bytes: number): void {
    this.used -= bytes;
    this.resume();
  }

  /** From the worker host: the job's one outcome. */
  settle(outcome: Outcome): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    this.resume();
    this.resolveSettled();
  }

  /** Tells the worker about the bytes just before `head` (never across the wrap: write tells first). */
  private tell(): void {
    if (this.untold === 0) return;
    this.host.post({ type: 'bytes', id: this.id, offset: this.head - this.untold, length: this.untold });
    this.untold = 0;
  }

  private resume(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private throwIfFailed(): void {
    if (this.outcome !== undefined && 'error' in this.outcome) throw this.outcome.error;
  }
}

/** One worker thread and the jobs it runs. It keeps the process alive only while it has jobs. */
class WorkerHost {
  readonly jobs = new Map<number, GroupJob>();
  private readonly worker: Worker;
  /** Rings of finished jobs, for the next ones: as many exist as jobs ever ran here at once. */
  private readonly freeRings: SharedArrayBuffer[] = [];

  constructor(private readonly onExit: (host: WorkerHost) => void) {
    // Inherited as they are unless export conditions must go: an explicit execArgv is validated, and
    // per-process flags (--max-semi-space-size, say) would then refuse to start the worker.
    const execArgv = withoutExportConditions(process.execArgv);
    this.worker = new Worker(WORKER_URL, execArgv.length === process.execArgv.length ? {} : { execArgv });
    this.worker.unref();
    this.worker.on('message', (message: FromGroupWorker) => this.receive(message));
    this.worker.on('error', (error: Error) => this.failAll(error));
    this.worker.on('exit', (code) => this.failAll(new Error(`exited with code ${code}`)));
  }

  start(id: number, spec: GroupSpec): GroupJob {
    const job = new GroupJob(this, id, this.freeRings.pop() ?? new SharedArrayBuffer(RING_BYTES));
    if (this.jobs.size === 0) this.worker.ref();
    this.jobs.set(id, job);
    this.post({ type: 'start', id, spec, ring: job.buffer });
    return job;
  }

  post(message: ToGroupWorker): void {
    this.worker.postMessage(message);
  }

  private receive(message: FromGroupWorker): void {
    const job = this.jobs.get(message.id);
    if (!job) return;
    if (message.type === 'ack') job.acknowledged(message.bytes);
    else if (message.type === 'done') this.finish(job, { result: message.result });
    else if (message.type === 'failed') this.finish(job, { error: fromWire(message.error) });
    else this.finish(job, { error: new SplinterError('INTERNAL', `group job ${job.id} aborted`) });
  }

  private finish(job: GroupJob, outcome: Outcome): void {
    this.jobs.delete(job.id);
    // A worker that failed or aborted may still be inflating from the ring; it only reads it, and the
    // job's output is discarded, so the next job may overwrite it.
    this.freeRings.push(job.buffer);
    if (this.jobs.size === 0) this.worker.unref();
    job.settle(outcome);
  }

  private failAll(cause: Error): void {
    this.onExit(this);
    const error = new SplinterError('INTERNAL', `the group unpack worker failed: ${cause.message}`, {
      cause,
    });
    for (const job of [...this.jobs.values()]) this.finish(job, { error });
  }
}

/**
 * Worker threads that unpack tar+gzip groups, created as groups need them (at most one fewer than the
 * cores, at least one, at most four) and reused by later pulls. Each job goes to the host with the
 * fewest jobs.
 */
class GroupPool {
  private readonly hosts: WorkerHost[] = [];
  private nextId = 1;
  private readonly size = Math.max(1, Math.min(4, availableParallelism() - 1));

  start(spec: GroupSpec): GroupJob {
    let host = this.hosts.reduce<WorkerHost | undefined>(
      (best, candidate) => (best === undefined || candidate.jobs.size < best.jobs.size ? candidate : best),
      undefined,
    );
    if (host === undefined || (host.jobs.size > 0 && this.hosts.length < this.size)) {
      host = new WorkerHost((gone) => {
        const index = this.hosts.indexOf(gone);
        if (index >= 0) this.hosts.splice(index, 1);
      });
      this.hosts.push(host);
    }
    const id = this.nextId;
    this.nextId += 1;
    return host.start(id, spec);
  }
}

const pool = new GroupPool();

/** Starts unpacking one group on a worker thread. */
export function startGroupJob(spec: GroupSpec): GroupJob {
  return pool.start(spec);
}

function fromWire(wire: WireError): Error {
  if (wire.splinter) return new SplinterError(wire.code as ErrorCode, wire.message);
  return Object.assign(new Error(wire.message), {
    code: wire.code,
    syscall: wire.syscall,
    path: wire.path,
    errno: wire.errno,
  });
}

/**
 * The worker runs built code throughout: the `source` export condition that tests and the bench pass
 * would send its imports of other packages to TypeScript files, which a worker cannot load.
 */
function withoutExportConditions(execArgv: string[]): string[] {
  const kept: string[] = [];
  for (let index = 0; index < execArgv.length; index += 1) {
    const arg = execArgv[index]!;
    if (arg === '--conditions' || arg === '-C') index += 1;
    else if (!arg.startsWith('--conditions=') && !arg.startsWith('-C=')) kept.push(arg);
  }
  return kept;
}

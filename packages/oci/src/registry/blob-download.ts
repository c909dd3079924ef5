import { Readable } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import type { Descriptor } from '../descriptor.js';
import type { RegistryClient, RegistryResponse } from './client.js';
import { abortedError } from './failure.js';
import { delayFor, isRetryableNetworkError, sleep } from './retry.js';

/** Bytes [start, end) of a blob. */
export interface ByteWindow {
  start: number;
  end: number;
}

export interface BlobDownloadOptions {
  desc: Descriptor;
  client: RegistryClient;
  /** The bytes wanted; the whole blob when absent. */
  window?: ByteWindow | undefined;
  /** The registry's answer (200 or 206) to the first request, body not yet read. */
  first: RegistryResponse;
  /** Asks for the rest after a dropped connection; must answer 200 or 206. */
  reopen: (rest: ByteWindow) => Promise<RegistryResponse>;
  /** Aborting it ends the stream at once with abortedError (INTERRUPTED), paused or waiting to resume. */
  signal?: AbortSignal | undefined;
}

/**
 * Bytes [start, end) of a blob (by default all of it) as one stream, exactly that many: more or fewer
 * is an error. After a dropped connection it asks for the rest with a narrower Range, and takes a 200
 * (a server that ignored Range) by skipping what it already has. An answer that covers more than the
 * window (a whole blob, or a wider 206) is closed once the window is full. The body's chunks are pushed
 * as they come (no async iteration in between: a pull moves tens of thousands of chunks).
 */
export class BlobDownload extends Readable {
  private readonly desc: Descriptor;
  private readonly client: RegistryClient;
  private readonly reopen: BlobDownloadOptions['reopen'];
  private readonly start: number;
  private readonly end: number;
  private received = 0;
  private resumes = 0;
  private pending: RegistryResponse | undefined;
  private body: Readable | undefined;
  private done = false;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = () => this.fail(this.abortError());

  constructor(options: BlobDownloadOptions) {
    super();
    this.desc = options.desc;
    this.client = options.client;
    this.reopen = options.reopen;
    this.start = options.window?.start ?? 0;
    this.end = options.window?.end ?? options.desc.size;
    this.pending = options.first;
    this.signal = options.signal;
    if (this.signal?.aborted) queueMicrotask(this.onAbort);
    else this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  private abortError(): SplinterError {
    return abortedError(this.signal!, `GET blob ${this.desc.digest}`);
  }

  override _read(): void {
    if (this.body) this.body.resume();
    else if (this.pending) {
      const response = this.pending;
      this.pending = undefined;
      this.attach(response);
    }
  }

  private get wanted(): number {
    return this.end - this.start;
  }

  private attach(response: RegistryResponse): void {
    const body = response.body as unknown as Readable;
    if (this.destroyed) {
      body.destroy();
      return;
    }
    const position = this.start + this.received;
    let served: ByteWindow;
    try {
      served = servedBytes(response, this.desc);
      if (served.start > position || served.end < this.end) {
        throw new SplinterError(
          'REGISTRY_ERROR',
          `GET blob ${this.desc.digest}: asked for bytes ${position}-${this.end - 1}, got ${served.start}-${served.end - 1}`,
          { details: { asked: { start: position, end: this.end }, served } },
        );
      }
    } catch (error) {
      body.destroy();
      this.destroy(error as Error);
      return;
    }
    let skip = position - served.start;
    // Bytes past the window are expected only when the answer declared more than the window.
    const closeWhenFull = served.end > this.end;
    this.body = body;
    body.on('data', (data: Buffer) => {
      if (this.done) return;
      let chunk = data;
      if (skip > 0) {
        if (chunk.byteLength <= skip) {
          skip -= chunk.byteLength;
          return;
        }
        chunk = chunk.subarray(skip);
        skip = 0;
      }
      const room = this.wanted - this.received;
      if (chunk.byteLength > room) {
        if (!closeWhenFull) {
          this.fail(this.sizeError(`more than the ${this.wanted} bytes declared`));
          return;
        }
        chunk = chunk.subarray(0, room);
      }
      this.received += chunk.byteLength;
      const more = this.push(chunk);
      if (closeWhenFull && this.received === this.wanted) this.finish();
      else if (!more) body.pause();
    });
    body.once('end', () => {
      if (this.done) return;
      if (this.received < this.wanted)
        this.fail(this.sizeError(`the answer ended after ${this.received} of ${this.wanted} bytes`));
      else this.finish();
    });
    body.once('error', (error) => {
      if (this.done) return;
      this.body = undefined;
      if (this.signal?.aborted) this.fail(this.abortError());
      else void this.resumeAfter(error);
    });
  }

  private finish(): void {
    this.done = true;
    this.push(null);
    this.body?.destroy();
    this.body = undefined;
  }

  private fail(error: Error): void {
    this.done = true;
    this.destroy(error);
  }

  private sizeError(what: string): SplinterError {
    return new SplinterError(
      'SIZE_MISMATCH',
      `GET blob ${this.desc.digest} bytes ${this.start}-${this.end - 1}: ${what}`,
      { details: { start: this.start, end: this.end, received: this.received } },
    );
  }

  private async resumeAfter(error: Error): Promise<void> {
    if (this.destroyed) return;
    if (this.received === this.wanted) {
      // Every byte arrived before the connection dropped.
      this.finish();
      return;
    }
    this.resumes += 1;
    if (!isRetryableNetworkError(error) || this.resumes >= this.client.retry.maxAttempts) {
      this.fail(
        isRetryableNetworkError(error)
          ? new SplinterError(
              'RETRIES_EXHAUSTED',
              `GET blob ${this.desc.digest}: connection dropped ${this.resumes} times`,
              { cause: error },
            )
          : error,
      );
      return;
    }
    this.client.stats.resumes += 1;
    // An abort meanwhile has ended the stream already (onAbort): only the wait is cut short.
    await sleep(delayFor(this.client.retry, this.resumes, undefined), undefined, {
      ...(this.signal ? { signal: this.signal } : {}),
    }).catch(() => undefined);
    if (this.destroyed) return;
    let response: RegistryResponse;
    try {
      response = await this.reopen({ start: this.start + this.received, end: this.end });
    } catch (reopenError) {
      this.fail(reopenError as Error);
      return;
    }
    this.attach(response);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.done = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.body?.destroy();
    (this.pending?.body as unknown as Readable | undefined)?.destroy();
    callback(error);
  }
}

/** The bytes an answer carries: all of the blob for 200, its Content-Range for 206. */
function servedBytes(response: RegistryResponse, desc: Descriptor): ByteWindow {
  if (response.status === 200) return { start: 0, end: desc.size };
  const contentRange = response.headers['content-range'] ?? '';
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange.trim());
  if (!match) {
    throw new SplinterError(
      'REGISTRY_ERROR',
      `GET blob ${desc.digest}: 206 without a usable Content-Range (${JSON.stringify(contentRange)})`,
    );
  }
  const total = match[3] === '*' ? undefined : Number(match[3]);
  if (total !== undefined && total !== desc.size) {
    throw new SplinterError(
      'SIZE_MISMATCH',
      `GET blob ${desc.digest}: the registry says it is ${total} bytes, the descriptor ${desc.size}`,
      { details: { expected: desc.size, received: total } },
    );
  }
  return { start: Number(match[1]), end: Number(match[2]) + 1 };
}

import { Readable } from 'node:stream';
import { progressStream, sizeLimit, toReadable } from '../content.js';
import type { Descriptor } from '../descriptor.js';
import type { PushOptions } from '../target.js';
import { abortedError } from './failure.js';
import type { Repository } from './repository.js';

/** An open upload session, as a journal needs it to cancel the session later (`cancelUpload`). */
export interface UploadSession {
  /** The registry's origin, `http(s)://host[:port]`. */
  origin: string;
  repository: string;
  /** The session's current location (it moves with every chunk). */
  url: string;
}

export interface UploadSessions {
  opened(session: UploadSession): Promise<{
    moved(session: UploadSession): Promise<void>;
    closed(): Promise<void>;
  }>;
}

export interface BlobUploadOptions {
  /** Blobs larger than this go up in chunks (PATCH with Content-Range). */
  chunkThreshold: number;
  chunkSize: number;
  /** Told of every upload session opened and closed, so one a kill abandons can be cancelled later. */
  sessions: UploadSessions | undefined;
}

/**
 * Blob uploads to one repository: a session (POST), then the bytes in one PUT (monolithic) or in
 * PATCH chunks and an empty PUT; cross-repository mounts; cancelling a session (DELETE). A session
 * that fails is cancelled, and the journal is told of each one while it is open.
 */
export class BlobUploads {
  constructor(
    private readonly repo: Repository,
    private readonly options: BlobUploadOptions,
  ) {}

  /** Sends a blob the registry lacks; the registry checks its digest when the session is committed. */
  async upload(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    const { client } = this.repo;
    const signal = options?.signal;
    let location = await this.start(signal);
    const session = (url: string): UploadSession => ({
      origin: client.origin,
      repository: this.repo.name,
      url,
    });
    const journal = await this.options.sessions?.opened(session(location)).catch(async (error: unknown) => {
      await this.cancel(location).catch(() => false);
      throw error;
    });
    const source = toReadable(content);
    // The registry checks the digest when the upload is committed (DIGEST_INVALID, which is our
    // DIGEST_MISMATCH), so the client only counts bytes: hashing here too would cost a core-second per
    // GiB on a machine the registry may share, for an error that comes a moment earlier.
    const verifying = sizeLimit(expected);
    const counted = progressStream(options?.onProgress);
    source.on('error', (error) => verifying.destroy(error));
    verifying.on('error', (error) => counted.destroy(error));
    source.pipe(verifying).pipe(counted);
    // A source that stalls must not hold an abort up: the bytes stop at once, whatever is waiting on them.
    const onAbort = () => counted.destroy(abortedError(signal!, `upload of ${expected.digest}`));
    signal?.addEventListener('abort', onAbort, { once: true });
    client.stats.blobUploads += 1;
    try {
      if (expected.size > this.options.chunkThreshold) {
        let offset = 0;
        for await (const chunk of chunksOf(counted, this.options.chunkSize)) {
          const end = offset + chunk.length - 1;
          const response = await client.send({
            method: 'PATCH',
            url: location,
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(chunk.length),
              'content-range': `${offset}-${end}`,
            },
            body: () => Readable.from(chunk.body),
            scopes: this.repo.scopes(true),
            signal,
          });
          await response.body.dump();
          if (response.status !== 202 || !response.headers.location)
            throw await this.repo.failure(response, `upload chunk ${offset}-${end}`);
          location = new URL(response.headers.location, response.url).href;
          await journal?.moved(session(location));
          offset = end + 1;
          client.stats.chunks += 1;
        }
        await this.finish(location, expected, undefined, signal);
      } else {
        await this.finish(location, expected, counted, signal);
      }
      await journal?.closed();
    } catch (error) {
      counted.destroy();
      // Cancelled now (also after an abort: the DELETE does not carry the signal); if the registry cannot
      // be told, the journal keeps it for the next run.
      if (await this.cancel(location).catch(() => false)) await journal?.closed();
      throw signal?.aborted ? abortedError(signal, `upload of ${expected.digest}`) : error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Cancels an upload session (DELETE on its location). True when the registry has no such session any
   * more (204, or 404: it finished, expired or was cancelled already).
   */
  async cancel(url: string): Promise<boolean> {
    const response = await this.repo.client.send({ method: 'DELETE', url, scopes: this.repo.scopes(true) });
    await response.body.dump();
    return (
      response.status === 204 || response.status === 202 || response.status === 200 || response.status === 404
    );
  }

  /** True if the blob was mounted from `fromRepository`; false if the registry declined. */
  async mount(desc: Descriptor, fromRepository: string, signal?: AbortSignal): Promise<boolean> {
    const { client } = this.repo;
    const from = encodeURIComponent(fromRepository);
    const response = await client.send({
      method: 'POST',
      url: `/v2/${this.repo.name}/blobs/uploads/?mount=${desc.digest}&from=${from}`,
      headers: { 'content-length': '0' },
      scopes: this.repo.scopes(true, [`repository:${fromRepository}:pull`]),
      replayable: true,
      signal,
    });
    await response.body.dump();
    if (response.status === 201) {
      client.stats.blobMounts += 1;
      return true;
    }
    if (response.status === 202 && response.headers.location) {
      await this.cancel(new URL(response.headers.location, response.url).href).catch(() => false);
      return false;
    }
    if (response.status === 404 || response.status === 401 || response.status === 403) return false;
    throw await this.repo.failure(response, `mount ${desc.digest} from ${fromRepository}`);
  }

  private async start(signal: AbortSignal | undefined): Promise<string> {
    const response = await this.repo.client.send({
      method: 'POST',
      url: `/v2/${this.repo.name}/blobs/uploads/`,
      headers: { 'content-length': '0' },
      scopes: this.repo.scopes(true),
      replayable: true,
      signal,
    });
    await response.body.dump();
    if (response.status !== 202 || !response.headers.location)
      throw await this.repo.failure(response, 'start upload');
    return new URL(response.headers.location, response.url).href;
  }

  /** The closing PUT with the digest: with the whole body (monolithic) or empty after the chunks. */
  private async finish(
    location: string,
    expected: Descriptor,
    body: Readable | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', expected.digest);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    headers['content-length'] = body ? String(expected.size) : '0';
    const response = await this.repo.client.send({
      method: 'PUT',
      url: url.href,
      headers,
      ...(body ? { body: () => body } : {}),
      scopes: this.repo.scopes(true),
      signal,
    });
    if (response.status !== 201)
      throw await this.repo.failure(response, `finish upload of ${expected.digest}`);
    await response.body.dump();
  }
}

/** Splits a stream into chunks of `size` bytes; each chunk is buffered (bounded by `size`). */
async function* chunksOf(source: Readable, size: number): AsyncGenerator<{ body: Buffer[]; length: number }> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const data of source as AsyncIterable<Buffer>) {
    let chunk = data;
    while (chunk.byteLength > 0) {
      const take = Math.min(size - length, chunk.byteLength);
      parts.push(chunk.subarray(0, take));
      length += take;
      chunk = chunk.subarray(take);
      if (length === size) {
        yield { body: parts, length };
        parts = [];
        length = 0;
      }
    }
  }
  if (length > 0) yield { body: parts, length };
}

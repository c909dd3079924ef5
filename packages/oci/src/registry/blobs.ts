import type { Readable } from 'node:stream';
import { SplinterError } from '@splintertree/errors';
import { checkRange } from '../content.js';
import type { Descriptor } from '../descriptor.js';
import { VerifyingStream } from '../digest.js';
import type { RangeRead } from '../target.js';
import { BlobDownload, type ByteWindow } from './blob-download.js';
import type { RegistryResponse } from './client.js';
import type { Repository } from './repository.js';

/**
 * How often one request for a blob asks the registry for a fresh redirect after the storage URL it
 * led to refused (a presigned URL past its expiry), before giving up with REDIRECT_REFUSED.
 */
export const MAX_REDIRECT_RENEWALS = 2;
/** What S3, CloudFront, GCS and Azure answer to an expired or revoked signed URL. */
const STORAGE_REFUSALS = new Set([400, 401, 403]);
const MAX_REDIRECT_HOPS = 5;
/** Storage URLs kept per reader, so that the reads of one pack blob skip the registry's redirect. */
const REMEMBERED_REDIRECTS = 256;

/**
 * Blob reads from one repository: HEAD, the whole blob, or a byte range of it with `Range`, through the
 * registry's redirects to blob storage. A storage URL that served a blob is reused for its next reads
 * until it stops serving, and then asked for afresh. The bytes stream through a BlobDownload, which
 * resumes after a dropped connection.
 */
export class BlobReader {
  private readonly redirects = new Map<string, string>();

  constructor(private readonly repo: Repository) {}

  exists(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    return this.repo.has('blobs', desc.digest, signal);
  }

  /** The whole blob, verified while it streams, resumed after dropped connections. */
  async fetch(desc: Descriptor, signal?: AbortSignal): Promise<Readable> {
    return this.whole(desc, await this.served(desc, undefined, signal), signal);
  }

  /**
   * Bytes [start, end) with one single-range request. A registry that ignores Range (200), or refuses
   * it (416, or 400 from the registry itself), gets the whole blob instead: kind `whole`.
   */
  async fetchRange(desc: Descriptor, start: number, end: number, signal?: AbortSignal): Promise<RangeRead> {
    checkRange(desc, start, end);
    const window = { start, end };
    const first = await this.open(desc, window, signal);
    if (first.status === 206) return { kind: 'range', stream: this.download(desc, window, first, signal) };
    if (first.status === 200) return { kind: 'whole', stream: this.whole(desc, first, signal) };
    if (first.status === 416 || first.status === 400) {
      await first.body.dump();
      return { kind: 'whole', stream: this.whole(desc, await this.served(desc, undefined, signal), signal) };
    }
    throw await this.repo.failure(first, `GET blob ${desc.digest} bytes ${start}-${end - 1}`);
  }

  private whole(desc: Descriptor, first: RegistryResponse, signal: AbortSignal | undefined): Readable {
    const verifying = new VerifyingStream(desc);
    const source = this.download(desc, undefined, first, signal);
    source.on('error', (error) => verifying.destroy(error));
    // Stopped early by its reader: the download is released, not left holding its connection.
    verifying.on('close', () => {
      if (!source.readableEnded) source.destroy();
    });
    return source.pipe(verifying);
  }

  private download(
    desc: Descriptor,
    window: ByteWindow | undefined,
    first: RegistryResponse,
    signal: AbortSignal | undefined,
  ): BlobDownload {
    return new BlobDownload({
      desc,
      client: this.repo.client,
      window,
      first,
      reopen: (rest) => this.served(desc, rest, signal),
      signal,
    });
  }

  /** `open`, failing unless the answer carries the blob's bytes. */
  private async served(
    desc: Descriptor,
    window: ByteWindow | undefined,
    signal: AbortSignal | undefined,
  ): Promise<RegistryResponse> {
    const response = await this.open(desc, window, signal);
    if (response.status === 200 || response.status === 206) return response;
    throw await this.repo.failure(response, `GET blob ${desc.digest}`);
  }

  /**
   * GET of the blob, with `Range` for a window, through redirects; a storage URL that refuses is asked
   * for afresh from the registry, at most MAX_REDIRECT_RENEWALS times.
   */
  private async open(
    desc: Descriptor,
    window: ByteWindow | undefined,
    signal: AbortSignal | undefined,
  ): Promise<RegistryResponse> {
    const headers: Record<string, string> = window
      ? { range: `bytes=${window.start}-${window.end - 1}` }
      : {};
    for (let renewals = 0; ; renewals++) {
      const remembered = this.redirects.get(desc.digest);
      const { response, redirected } = await this.follow(
        remembered ?? this.repo.path('blobs', desc.digest),
        headers,
        signal,
      );
      if (!redirected && remembered === undefined) return response;
      if (!STORAGE_REFUSALS.has(response.status)) {
        if (response.status === 200 || response.status === 206) this.remember(desc, response.url.href);
        return response;
      }
      await response.body.dump();
      this.redirects.delete(desc.digest);
      if (renewals >= MAX_REDIRECT_RENEWALS) {
        throw new SplinterError(
          'REDIRECT_REFUSED',
          `${this.repo.location}: GET blob ${desc.digest}: the storage URL the registry redirected to answered ${response.status}, ${renewals + 1} times`,
          { details: { status: response.status, attempts: renewals + 1, storage: response.url.origin } },
        );
      }
      this.repo.client.stats.redirectRenewals += 1;
    }
  }

  private async follow(
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<{ response: RegistryResponse; redirected: boolean }> {
    const get = (target: string) =>
      this.repo.client.send({
        method: 'GET',
        url: target,
        headers,
        scopes: this.repo.scopes(),
        replayable: true,
        signal,
      });
    let response = await get(url);
    let redirected = false;
    for (let hops = 0; hops < MAX_REDIRECT_HOPS && response.status >= 300 && response.status < 400; hops++) {
      const location = response.headers.location;
      await response.body.dump();
      if (!location)
        throw new SplinterError('REGISTRY_ERROR', `redirect without Location from ${response.url.href}`);
      response = await get(new URL(location, response.url).href);
      redirected = true;
    }
    return { response, redirected };
  }

  private remember(desc: Descriptor, url: string): void {
    this.redirects.delete(desc.digest);
    this.redirects.set(desc.digest, url);
    if (this.redirects.size > REMEMBERED_REDIRECTS) {
      const oldest = this.redirects.keys().next().value;
      if (oldest !== undefined) this.redirects.delete(oldest);
    }
  }
}

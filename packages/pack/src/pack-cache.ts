import { createWriteStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SplinterError } from '@splintertree/errors';
import { type Digest, digestHex } from '@splintertree/oci';
import { fileSystemError } from './fs-errors.js';
import { deadOwner, type OwnerGone, sweepOrphans } from './processes.js';

export type Span = [start: number, end: number];

/** What prune holds in memory at once while it rewrites a pack's kept spans. */
const PRUNE_COPY_BYTES = 1024 * 1024;

/** A fetched range is written this much at a time (a registry's body arrives in 16-64 KiB pieces). */
const WRITE_BYTES = 1024 * 1024;

/**
 * Packs kept open for reading between records: an install reads thousands of records from a few packs,
 * and an open and a close per record cost a fresh 5,000-file install about a second of its main thread.
 */
const OPEN_READERS = 8;

/**
 * The client's cache of pack bytes: one sparse file per pack, holding the byte ranges fetched so far,
 * and beside it the list of ranges that are complete (`<hex>.ranges`). Records are checked when they
 * are read (chunk id, or the AES-GCM tag of a sealed pack), so a range is only ever a download not to
 * repeat: an interrupted pull resumes from what is listed, a preload staged early is installed without
 * a download, and a rollback reads what an earlier install fetched. Nothing here is fsynced: a process
 * killed at any point leaves its writes in the page cache, and what a power cut loses fails its check
 * when read, is unlisted and fetched again (see readRecordHealing), so syncing each range (about two
 * fsyncs per 8 MiB, 1.7 s per GiB here) bought nothing but time.
 */
export class PackCache {
  private readonly spans = new Map<string, Promise<Span[]>>();
  private readonly writes = new Map<string, Promise<void>>();
  /** Read handles by pack digest, least recently used first. */
  private readonly readers = new Map<string, Promise<FileHandle>>();

  constructor(readonly dir: string) {}

  /** Removes what a killed run left: temporary files of processes that are gone. */
  sweep(gone: OwnerGone = deadOwner): string[] {
    return sweepOrphans(this.dir, /\.tmp-(\d+)-/, gone);
  }

  /** True if any range of the pack is cached. */
  async touched(digest: string): Promise<boolean> {
    return (await this.load(digest)).length > 0;
  }

  /** True if bytes [start, end) of the pack are cached. */
  async has(digest: string, start: number, end: number): Promise<boolean> {
    return (await this.load(digest)).some(([s, e]) => s <= start && end <= e);
  }

  /** Stored bytes [start, start + length) of a pack; they must be cached. */
  async read(digest: string, start: number, length: number): Promise<Buffer> {
    const file = await this.reader(digest);
    const bytes = Buffer.allocUnsafe(length);
    const { bytesRead } = await file.read(bytes, 0, length, start);
    if (bytesRead !== length) {
      throw new SplinterError('BLOB_UNKNOWN', `cached pack ${digest} ends before byte ${start + length}`);
    }
    return bytes;
  }

  /** Closes the packs held open for reading (an install calls this when it ends). */
  async closeReaders(): Promise<void> {
    const open = [...this.readers.keys()];
    await Promise.all(open.map((digest) => this.dropReader(digest)));
  }

  private reader(digest: string): Promise<FileHandle> {
    let handle = this.readers.get(digest);
    if (handle) {
      this.readers.delete(digest);
      this.readers.set(digest, handle);
      return handle;
    }
    handle = open(this.dataPath(digest), 'r');
    handle.catch(() => {
      if (this.readers.get(digest) === handle) this.readers.delete(digest);
    });
    this.readers.set(digest, handle);
    const oldest = this.readers.keys().next().value;
    if (this.readers.size > OPEN_READERS && oldest !== undefined) void this.dropReader(oldest);
    return handle;
  }

  /**
   * Closes a pack's read handle once the reads under way are done with it (a read started on it
   * holds its promise). A pack renamed over (a whole pack, a pruned one) must be reopened, or reads
   * would go on seeing the file it replaced.
   */
  private async dropReader(digest: string): Promise<void> {
    const handle = this.readers.get(digest);
    if (!handle) return;
    this.readers.delete(digest);
    const file = await handle.catch(() => undefined);
    await file?.close().catch(() => undefined);
  }

  /**
   * A record of a pack, decoded and checked by `decode`. A record that fails its check is dropped from
   * the list of cached ranges before the error goes on, so the next run downloads it again instead of
   * failing on the same bytes forever.
   */
  async readRecord<T>(digest: string, start: number, length: number, decode: (stored: Buffer) => Promise<T>) {
    const stored = await this.read(digest, start, length);
    try {
      return await decode(stored);
    } catch (error) {
      await this.forget(digest, start, start + length);
      throw error;
    }
  }

  /** Unlists bytes [start, end) of a pack: they are fetched again when next needed. */
  forget(digest: string, start: number, end: number): Promise<void> {
    return this.serialized(digest, async () => {
      const onDisk = await readFile(`${this.dataPath(digest)}.ranges`, 'utf8').then(parseSpans, () => []);
      const kept = unionSpans([...onDisk, ...(await this.load(digest))]).flatMap(([s, e]): Span[] => {
        if (e <= start || end <= s) return [[s, e]];
        return [...(s < start ? [[s, start] as Span] : []), ...(end < e ? [[end, e] as Span] : [])];
      });
      await this.saveSpans(digest, kept);
    });
  }

  /** Writes a fetched range (exactly end - start bytes from `source`), then lists it. */
  async writeRange(digest: string, start: number, end: number, source: Readable): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const path = this.dataPath(digest);
    const file = await open(path, 'a')
      .then((f) => f.close())
      .then(() => open(path, 'r+'));
    let written = 0;
    const buffer = Buffer.allocUnsafe(Math.min(WRITE_BYTES, end - start));
    let buffered = 0;
    const flush = async () => {
      await file.write(buffer, 0, buffered, start + written - buffered);
      buffered = 0;
    };
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        if (written + chunk.byteLength > end - start) {
          throw new SplinterError('SIZE_MISMATCH', `range ${start}-${end} of ${digest} came with more bytes`);
        }
        for (let at = 0; at < chunk.byteLength; ) {
          const taken = chunk.copy(buffer, buffered, at);
          buffered += taken;
          written += taken;
          at += taken;
          if (buffered === buffer.byteLength) await flush();
        }
      }
      if (buffered > 0) await flush();
      if (written !== end - start) {
        throw new SplinterError(
          'SIZE_MISMATCH',
          `range ${start}-${end} of ${digest} came with ${written} bytes`,
        );
      }
    } catch (error) {
      throw fileSystemError(error, path);
    } finally {
      await file.close();
    }
    await this.addSpan(digest, [start, end]).catch((error: unknown) => {
      throw fileSystemError(error, `${path}.ranges`);
    });
  }

  /** Stores a whole pack from a digest-checked stream (a registry that ignored Range). */
  async writeWhole(digest: string, size: number, source: Readable): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const temporary = join(
      this.dir,
      `${digestHex(digest as Digest)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`,
    );
    try {
      await pipeline(source, createWriteStream(temporary, { mode: 0o600, highWaterMark: WRITE_BYTES }));
      await this.serialized(digest, async () => {
        // Windows renames over no file held open; and a handle kept would go on reading the old file.
        await this.dropReader(digest);
        await rename(temporary, this.dataPath(digest));
        await this.dropReader(digest);
        await this.saveSpans(digest, [[0, size]]);
      });
    } catch (error) {
      await rm(temporary, { force: true });
      throw fileSystemError(error, this.dataPath(digest));
    }
  }

  /**
   * Keeps only the byte ranges `needed` lists (by pack digest): a pack none of them needs is deleted, one
   * holding more than its needed ranges is rewritten to hold just those (sparse). The list of ranges
   * shrinks before the data does, so it never names bytes the file lacks; a record dropped that a later
   * install wants is simply downloaded again. Returns the bytes on disk (allocated blocks) before and after.
   */
  async prune(needed: Map<string, Span[]>): Promise<PruneStats> {
    const stats: PruneStats = {
      bytesBefore: 0,
      bytesAfter: 0,
      removedPacks: 0,
      rewrittenPacks: 0,
      keptPacks: 0,
    };
    // Packs are deleted and renamed over below: nothing may go on reading the files they replace.
    await this.closeReaders();
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const digest = `sha256:${name}`;
      const path = join(this.dir, name);
      const before = await diskBytes(path);
      const ranges = await diskBytes(`${path}.ranges`);
      stats.bytesBefore += before + ranges;
      await this.serialized(digest, async () => {
        const held = await readFile(`${path}.ranges`, 'utf8').then(parseSpans, () => [] as Span[]);
        const keep = intersect(held, unionSpans(needed.get(digest) ?? []));
        if (keep.length === 0) {
          await rm(`${path}.ranges`, { force: true });
          await rm(path, { force: true });
          this.spans.delete(digest);
          stats.removedPacks += 1;
          return;
        }
        const heldBytes = held.reduce((sum, [a, b]) => sum + b - a, 0);
        const keptBytes = keep.reduce((sum, [a, b]) => sum + b - a, 0);
        if (keptBytes === heldBytes) {
          stats.keptPacks += 1;
          stats.bytesAfter += before + ranges;
          return;
        }
        const temporary = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
        const source = await open(path, 'r');
        const target = await open(temporary, 'w', 0o600);
        try {
          // Kept spans may be whole packs (60 MiB): they are copied through one bounded buffer.
          const buffer = Buffer.allocUnsafe(PRUNE_COPY_BYTES);
          for (const [start, end] of keep) {
            for (let at = start; at < end; ) {
              const { bytesRead } = await source.read(buffer, 0, Math.min(buffer.length, end - at), at);
              if (bytesRead === 0) break;
              await target.write(buffer, 0, bytesRead, at);
              at += bytesRead;
            }
          }
          await target.sync();
        } finally {
          await source.close();
          await target.close();
        }
        await this.saveSpans(digest, keep);
        await rename(temporary, path);
        stats.rewrittenPacks += 1;
        stats.bytesAfter += (await diskBytes(path)) + (await diskBytes(`${path}.ranges`));
      });
    }
    return stats;
  }

  private dataPath(digest: string): string {
    return join(this.dir, digestHex(digest as Digest));
  }

  private load(digest: string): Promise<Span[]> {
    let spans = this.spans.get(digest);
    if (!spans) {
      spans = readFile(`${this.dataPath(digest)}.ranges`, 'utf8').then(
        (text) => parseSpans(text),
        () => [],
      );
      this.spans.set(digest, spans);
    }
    return spans;
  }

  private addSpan(digest: string, span: Span): Promise<void> {
    return this.serialized(digest, async () => {
      // Another process may have listed ranges meanwhile: merge with what is on disk.
      const onDisk = await readFile(`${this.dataPath(digest)}.ranges`, 'utf8').then(parseSpans, () => []);
      await this.saveSpans(digest, unionSpans([...onDisk, ...(await this.load(digest)), span]));
    });
  }

  private async saveSpans(digest: string, spans: Span[]): Promise<void> {
    const path = `${this.dataPath(digest)}.ranges`;
    const temporary = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const file = await open(temporary, 'w', 0o600);
    try {
      await file.writeFile(JSON.stringify(spans));
    } finally {
      await file.close();
    }
    await rename(temporary, path);
    this.spans.set(digest, Promise.resolve(spans));
  }

  private serialized(digest: string, run: () => Promise<void>): Promise<void> {
    const previous = this.writes.get(digest) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(run);
    this.writes.set(digest, next);
    return next;
  }
}

export interface PruneStats {
  bytesBefore: number;
  bytesAfter: number;
  removedPacks: number;
  rewrittenPacks: number;
  keptPacks: number;
}

/** Bytes a file takes on disk (its allocated blocks: a sparse pack counts only what it holds). */
async function diskBytes(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  return info ? info.blocks * 512 : 0;
}

/** The parts of `a` that lie in `b` (both sorted, disjoint). */
function intersect(a: Span[], b: Span[]): Span[] {
  const out: Span[] = [];
  let j = 0;
  for (const [start, end] of a) {
    while (j < b.length && b[j]![1] <= start) j += 1;
    for (let k = j; k < b.length && b[k]![0] < end; k += 1) {
      const s = Math.max(start, b[k]![0]);
      const e = Math.min(end, b[k]![1]);
      if (s < e) out.push([s, e]);
    }
  }
  return out;
}

function parseSpans(text: string): Span[] {
  try {
    const value: unknown = JSON.parse(text);
    if (!Array.isArray(value)) return [];
    return value.filter(
      (s): s is Span =>
        Array.isArray(s) &&
        s.length === 2 &&
        Number.isSafeInteger(s[0]) &&
        Number.isSafeInteger(s[1]) &&
        s[0] < s[1],
    );
  } catch {
    return []; // a damaged list only costs a download
  }
}

/** The union of spans, sorted, overlapping or touching ones joined (unlike mergeSpans, no gap is bridged). */
export function unionSpans(spans: Span[]): Span[] {
  const sorted = spans.slice().sort((a, b) => a[0] - b[0]);
  const out: Span[] = [];
  for (const span of sorted) {
    const last = out.at(-1);
    if (last && span[0] <= last[1]) last[1] = Math.max(last[1], span[1]);
    else out.push([span[0], span[1]]);
  }
  return out;
}

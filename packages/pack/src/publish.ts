import { createHash } from 'node:crypto';
import { open as openFile } from 'node:fs/promises';
import { chunkerOptions, chunkStream } from '@splintertree/cdc';
import { SplinterError } from '@splintertree/errors';
import { keyIdOf } from '@splintertree/seal';
import picomatch from 'picomatch';
import { ChunkPool, defaultChunkThreads } from './chunk-pool.js';
import {
  type ChunkerSettings,
  type ChunkRef,
  Encoding,
  FORMAT_NAME,
  type IndexRoot,
  type PackEntry,
} from './format.js';
import { fileSystemError } from './fs-errors.js';
import { encodeIndex, type IndexEntry } from './index-codec.js';
import { type ClosedPack, PackWriter } from './packer.js';
import { safeRelativePath } from './paths.js';
import { assertPortable } from './portable.js';
import {
  chunkId,
  type EncodedRecord,
  encodeRecord,
  fileDigest,
  finishRecord,
  worthDeflating,
} from './records.js';
import { walkTree } from './walk.js';

/** Files matching any pattern carry the tag (`locale:deDE`, `platform:windows`); see docs/format.md. */
export interface TagRule {
  tag: string;
  patterns: string[];
}

/** What an earlier version holds: the publisher reuses its chunks without asking the registry. */
export interface BaseVersion {
  root: IndexRoot;
  entries: IndexEntry[];
}

export interface PublishOptions {
  dir: string;
  /** Where packs are written before upload (removed by the caller). */
  workDir: string;
  base?: BaseVersion | undefined;
  /** A preload: every new record and the root are sealed under this patch key. */
  key?: Uint8Array | undefined;
  tagRules?: TagRule[] | undefined;
  portable?: boolean;
  /** Follow symlinks that leave the tree (see walkTree). */
  dereference?: boolean | undefined;
  chunker?: Partial<ChunkerSettings> | undefined;
  /** A base pack whose live records fall below this fraction of its bytes is rewritten (default 0.5). */
  minLiveFraction?: number;
  /** Worker threads that chunk and hash (default: one per core, at most 4; 0 chunks on this thread). */
  threads?: number | undefined;
  /** Called as each new pack closes: its upload may start at once. */
  onPack: (pack: ClosedPack) => void;
}

export interface PublishStats {
  files: number;
  bytes: number;
  chunks: number;
  newChunks: number;
  /** Bytes of new records (what this version adds to the registry, before the root). */
  newRecordBytes: number;
  /** Base packs rewritten because most of their bytes were dead. */
  compactedPacks: number;
  /** Chunks of those packs packed anew, and their bytes (not counted as new). */
  rewrittenChunks: number;
  rewrittenBytes: number;
}

export interface Published {
  root: IndexRoot;
  /** Every pack the version reads from, by number: the manifest lists them all so GC keeps them. */
  packs: PackEntry[];
  stats: PublishStats;
}

/** Encodes in flight while packing goes on (compression runs on the thread pool). */
const ENCODE_AHEAD = 8;

/**
 * Cuts every file of `dir` into content-defined chunks, writes the chunks no earlier version holds
 * into new packs (through `onPack`), rewrites the live records of mostly-dead base packs, and builds
 * the index and its root. Files are read once, in path order, so packs are reproducible for a given
 * tree and base; only compaction reads some chunks a second time.
 */
export async function publishTree(options: PublishOptions): Promise<Published> {
  const chunker = chunkerOptions(options.chunker ?? options.base?.root.chunker);
  const keyId = options.key ? keyIdOf(options.key) : undefined;
  const basePacks = new Map((options.base?.root.packs ?? []).map((p) => [p.number, p]));
  const known = new Map<string, ChunkRef>();
  for (const entry of options.base?.entries ?? []) {
    if (entry.type === 'file') for (const ref of entry.chunks) known.set(ref.id.toString('hex'), ref);
  }
  for (const ref of options.base?.root.index.chunks ?? []) known.set(ref.id.toString('hex'), ref);

  const items = await walkTree(options.dir, { dereference: options.dereference });
  const files = items.flatMap((item) => (item.type === 'file' ? [item] : []));
  const pool = ChunkPool.open(files, chunker, options.threads ?? defaultChunkThreads());
  const writer = new PackWriter(
    options.workDir,
    options.base?.root.nextPack ?? 0,
    keyId,
    (pack) => {
      newPacks.set(pack.entry.number, pack.entry);
      options.onPack(pack);
    },
    (path) => pool.digestOf(path),
  );
  const newPacks = new Map<number, PackEntry>();
  const stats: PublishStats = {
    files: 0,
    bytes: 0,
    chunks: 0,
    newChunks: 0,
    newRecordBytes: 0,
    compactedPacks: 0,
    rewrittenChunks: 0,
    rewrittenBytes: 0,
  };
  const pipeline = new RecordPipeline(writer, known, options.key, stats);
  /** Where a chunk reused from the base was seen, should its pack be compacted. */
  const seenAt = new Map<string, { path: string; offset: number; length: number }>();

  try {
    const tagsOf = tagMatcher(options.tagRules ?? []);
    const entries: IndexEntry[] = [];
    /** Per file, the ids of its chunks in order (their refs are final only once every record is placed). */
    const fileChunks = new Map<IndexEntry, Buffer[]>();
    // Push never accepts what a client would refuse; a portable tree also installs on every OS.
    for (const item of items) safeRelativePath(item.path, 'path');
    if (options.portable !== false) assertPortable(items.map((item) => item.path));
    let fileNumber = 0;
    for (const item of items) {
      const tags = tagsOf(item.path);
      if (item.type === 'directory') entries.push({ type: 'directory', path: item.path, tags });
      else if (item.type === 'symlink')
        entries.push({ type: 'symlink', path: item.path, target: item.target, tags });
      else {
        const ids: Buffer[] = [];
        let size = 0;
        for await (const chunk of pool.chunks(fileNumber++)) {
          const id = chunk.id;
          size += chunk.bytes.byteLength;
          ids.push(id);
          const hex = id.toString('hex');
          if (!known.has(hex) && !pipeline.planned(hex))
            await pipeline.add(id, hex, chunk.bytes, chunk.deflate);
          else if (!seenAt.has(hex) && known.has(hex)) {
            seenAt.set(hex, {
              path: item.absolutePath,
              offset: chunk.offset,
              length: chunk.bytes.byteLength,
            });
          }
        }
        const entry: IndexEntry = {
          type: 'file',
          path: item.path,
          executable: item.executable,
          tags,
          size,
          digest: fileDigest(ids),
          chunks: [],
        };
        fileChunks.set(entry, ids);
        entries.push(entry);
        stats.files += 1;
        stats.bytes += size;
        stats.chunks += ids.length;
      }
    }
    await pipeline.flush();

    // Compaction: base packs whose live records are a small part of their bytes are not carried on;
    // their live chunks are read again from the tree and packed anew.
    const retired = retiredPacks(basePacks, [...fileChunks.values()], known, options.minLiveFraction ?? 0.5);
    stats.compactedPacks = retired.size;
    const countRewrites = async (rewrite: () => Promise<void>) => {
      const [chunks, bytes] = [stats.newChunks, stats.newRecordBytes];
      await rewrite();
      stats.rewrittenChunks += stats.newChunks - chunks;
      stats.rewrittenBytes += stats.newRecordBytes - bytes;
      [stats.newChunks, stats.newRecordBytes] = [chunks, bytes];
    };
    if (retired.size > 0) {
      await countRewrites(async () => {
        for (const [hex, where] of seenAt) {
          const ref = known.get(hex)!;
          if (!retired.has(ref.pack)) continue;
          const bytes = await readRange(where.path, where.offset, where.length);
          if (!chunkId(bytes).equals(ref.id)) {
            throw new SplinterError('DIGEST_MISMATCH', `${where.path} changed while it was being pushed`);
          }
          known.delete(hex);
          await pipeline.add(ref.id, hex, bytes);
        }
        await pipeline.flush();
      });
    }

    for (const [entry, ids] of fileChunks) {
      if (entry.type === 'file') entry.chunks = ids.map((id) => known.get(id.toString('hex'))!);
    }
    const indexBytes = encodeIndex(entries);
    const indexIds: Buffer[] = [];
    for await (const chunk of chunkStream(oneChunk(indexBytes), chunker)) {
      const id = chunkId(chunk);
      const hex = id.toString('hex');
      indexIds.push(id);
      const reused = known.get(hex);
      if ((!reused || retired.has(reused.pack)) && !pipeline.planned(hex)) {
        known.delete(hex);
        if (reused) {
          await pipeline.flush();
          await countRewrites(() => pipeline.add(id, hex, chunk).then(() => pipeline.flush()));
        } else await pipeline.add(id, hex, chunk);
      }
    }
    await pipeline.flush();
    await writer.close();
    await writer.settled();

    const indexChunks = indexIds.map((id) => known.get(id.toString('hex'))!);
    const used = new Set<number>();
    for (const ref of indexChunks) used.add(ref.pack);
    for (const entry of entries)
      if (entry.type === 'file') for (const ref of entry.chunks) used.add(ref.pack);
    const packs = [...used].sort((a, b) => a - b).map((n) => newPacks.get(n) ?? basePacks.get(n)!);
    const root: IndexRoot = {
      format: FORMAT_NAME,
      chunker: { minSize: chunker.minSize, avgSize: chunker.avgSize, maxSize: chunker.maxSize },
      nextPack: writer.next,
      packs,
      index: {
        digest: `sha256:${createHash('sha256').update(indexBytes).digest('hex')}`,
        size: indexBytes.byteLength,
        chunks: indexChunks,
      },
      files: stats.files,
      bytes: stats.bytes,
      tags: [...new Set(entries.flatMap((e) => e.tags))].sort(),
      portable: options.portable ?? true,
    };
    return { root, packs, stats };
  } catch (error) {
    await pipeline.abandon();
    await writer.abandon();
    throw fileSystemError(error);
  } finally {
    await pool.close();
  }
}

/**
 * Base packs to retire: those whose records still used by this version (content chunks reused from
 * them) fill less than `minLive` of their bytes. Records of the base's index count as dead: the
 * index is rebuilt every version.
 */
function retiredPacks(
  basePacks: Map<number, PackEntry>,
  files: Buffer[][],
  known: Map<string, ChunkRef>,
  minLive: number,
): Set<number> {
  const live = new Map<number, number>();
  const counted = new Set<string>();
  for (const ids of files) {
    for (const id of ids) {
      const hex = id.toString('hex');
      if (counted.has(hex)) continue;
      counted.add(hex);
      const ref = known.get(hex)!;
      if (basePacks.has(ref.pack)) live.set(ref.pack, (live.get(ref.pack) ?? 0) + ref.storedLength);
    }
  }
  const retired = new Set<number>();
  for (const [number, bytes] of live) {
    if (bytes < basePacks.get(number)!.size * minLive) retired.add(number);
  }
  return retired;
}

/** Encodes records a few at a time and appends them to packs in the order they were added. */
class RecordPipeline {
  private readonly queue: Array<{
    id: Buffer;
    hex: string;
    plainLength: number;
    encoded: ReturnType<typeof encodeRecord>;
  }> = [];
  private readonly pending = new Set<string>();

  constructor(
    private readonly writer: PackWriter,
    private readonly known: Map<string, ChunkRef>,
    private readonly key: Uint8Array | undefined,
    private readonly stats: PublishStats,
  ) {}

  planned(hex: string): boolean {
    return this.pending.has(hex);
  }

  /**
   * `plain` may be reused by the caller once this resolves. `deflate` says whether compressing it may
   * pay (a sample of it shrank); by default that is sampled here.
   */
  async add(id: Buffer, hex: string, plain: Uint8Array, deflate = worthDeflating(plain)): Promise<void> {
    if (!deflate && this.queue.length === 0) {
      // Nothing to wait for: straight into the pack, with no copy of its own.
      await this.place(
        id,
        hex,
        plain.byteLength,
        finishRecord(id, plain, Encoding.Raw, plain.byteLength, this.key),
      );
      return;
    }
    this.pending.add(hex);
    const encoded = encodeRecord(id, Buffer.from(plain), this.key, deflate);
    encoded.catch(() => undefined); // awaited in order below
    this.queue.push({ id, hex, plainLength: plain.byteLength, encoded });
    if (this.queue.length >= ENCODE_AHEAD) await this.placeOne();
  }

  async flush(): Promise<void> {
    while (this.queue.length > 0) await this.placeOne();
  }

  async abandon(): Promise<void> {
    await Promise.allSettled(this.queue.map((item) => item.encoded));
    this.queue.length = 0;
  }

  private async placeOne(): Promise<void> {
    const item = this.queue.shift()!;
    await this.place(item.id, item.hex, item.plainLength, await item.encoded);
    this.pending.delete(item.hex);
  }

  private async place(id: Buffer, hex: string, plainLength: number, record: EncodedRecord): Promise<void> {
    const { pack, offset } = await this.writer.append(record.bytes);
    this.known.set(hex, {
      id,
      plainLength,
      pack,
      offset,
      storedLength: record.bytes.byteLength,
      encoding: record.encoding,
    });
    this.stats.newChunks += 1;
    this.stats.newRecordBytes += record.bytes.byteLength;
  }
}

async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const file = await openFile(path, 'r');
  try {
    const bytes = Buffer.allocUnsafe(length);
    const { bytesRead } = await file.read(bytes, 0, length, offset);
    return bytes.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

async function* oneChunk(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

function tagMatcher(rules: TagRule[]): (path: string) => string[] {
  const compiled = rules.map((rule) => ({ tag: rule.tag, match: picomatch(rule.patterns, { dot: true }) }));
  return (path) =>
    compiled
      .filter((rule) => rule.match(path))
      .map((rule) => rule.tag)
      .sort();
}

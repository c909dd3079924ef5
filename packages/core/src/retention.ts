import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type ChunkRef, type IndexRoot, type PruneStats, type Span, unionSpans } from '@splintertree/pack';
import { readRecord, writeRecord } from './records.js';

/** A version the cache serves: what installing it (again, for a rollback) reads from the pack cache. */
export interface RetainedVersion {
  manifestDigest: string;
  /** `installed` into some folder, or `staged` (a preload fetched ahead). */
  kind: 'installed' | 'staged';
  /** When it was installed or staged (ms since 1970). */
  at: number;
  /** Its decoded index in `indexes/`, if one is kept there. */
  indexDigest?: string | undefined;
  /** Byte ranges of each pack (by digest) its records occupy. */
  packs: Record<string, Span[]>;
}

export interface PruneResult {
  keep: number;
  /** The versions whose bytes were kept, newest first. */
  kept: { manifestDigest: string; kind: 'installed' | 'staged' }[];
  /** Bytes on disk of `packs/` and `indexes/`, before and after. */
  before: number;
  after: number;
  removedPacks: number;
  rewrittenPacks: number;
  removedIndexes: number;
}

const MAX_REMEMBERED = 64;

/** The ranges a version needs: its index records and the records of the files installed. */
export function versionNeeds(root: IndexRoot, refs: ChunkRef[]): Record<string, Span[]> {
  const packs = new Map(root.packs.map((p) => [p.number, p.digest]));
  const needs: Record<string, Span[]> = {};
  for (const ref of [...root.index.chunks, ...refs]) {
    const digest = packs.get(ref.pack);
    if (!digest) continue;
    const spans = needs[digest] ?? [];
    spans.push([ref.offset, ref.offset + ref.storedLength]);
    needs[digest] = spans;
  }
  for (const [digest, spans] of Object.entries(needs)) needs[digest] = unionSpans(spans);
  return needs;
}

/** `SPLINTER_HOME/retained.json`: the versions installed and staged here, newest last. */
export class Retention {
  constructor(private readonly home: string) {}

  private get file(): string {
    return join(this.home, 'retained.json');
  }

  async list(): Promise<RetainedVersion[]> {
    return (await readRecord<RetainedVersion[]>(this.file)) ?? [];
  }

  /** Records that `version` was installed or staged now (an earlier entry for it is replaced). */
  async remember(version: Omit<RetainedVersion, 'at'>): Promise<void> {
    const others = (await this.list()).filter(
      (v) => !(v.manifestDigest === version.manifestDigest && v.kind === version.kind),
    );
    await writeRecord(this.file, [...others, { ...version, at: Date.now() }].slice(-MAX_REMEMBERED));
  }

  /**
   * Which versions to keep: every version a folder holds now (`current`), the `keep` newest installed
   * ones (what a rollback to them reads), and staged preloads: those listed in `preloads` when given
   * (a launcher knows the realm's), else those staged since the oldest version kept.
   */
  async choose(keep: number, current: Set<string>, preloads?: Set<string>): Promise<RetainedVersion[]> {
    const all = (await this.list()).slice().sort((a, b) => b.at - a.at);
    const installed = all.filter((v) => v.kind === 'installed');
    const chosen = installed.filter((v, i) => i < keep || current.has(v.manifestDigest));
    const oldest = Math.min(...chosen.map((v) => v.at), Number.POSITIVE_INFINITY);
    const staged = all.filter(
      (v) =>
        v.kind === 'staged' &&
        (preloads ? preloads.has(v.manifestDigest) : chosen.length === 0 || v.at >= oldest),
    );
    return [...chosen, ...staged].sort((a, b) => b.at - a.at);
  }

  async forgetAllBut(kept: RetainedVersion[]): Promise<void> {
    const keep = new Set(kept.map((v) => `${v.kind} ${v.manifestDigest}`));
    const all = await this.list();
    await writeRecord(
      this.file,
      all.filter((v) => keep.has(`${v.kind} ${v.manifestDigest}`)),
    );
  }
}

/** Everything the chosen versions need, by pack digest. */
export function neededRanges(versions: RetainedVersion[]): Map<string, Span[]> {
  const needed = new Map<string, Span[]>();
  for (const version of versions) {
    for (const [digest, spans] of Object.entries(version.packs)) {
      needed.set(digest, unionSpans([...(needed.get(digest) ?? []), ...spans]));
    }
  }
  return needed;
}

/** Removes decoded indexes no kept version uses; returns how many and the bytes before and after. */
export async function pruneIndexes(
  dir: string,
  keep: Set<string>,
): Promise<{ removed: number; before: number; after: number }> {
  let removed = 0;
  let before = 0;
  let after = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (!info?.isFile()) continue;
    const bytes = info.blocks * 512;
    before += bytes;
    if (/^[0-9a-f]{64}$/.test(name) && keep.has(`sha256:${name}`)) {
      after += bytes;
      continue;
    }
    if (!/^[0-9a-f]{64}$/.test(name)) {
      after += bytes;
      continue; // not ours to judge (a temporary file of a running process)
    }
    await rm(join(dir, name), { force: true });
    removed += 1;
  }
  return { removed, before, after };
}

export function combine(pack: PruneStats, indexes: { removed: number; before: number; after: number }) {
  return {
    before: pack.bytesBefore + indexes.before,
    after: pack.bytesAfter + indexes.after,
    removedPacks: pack.removedPacks,
    rewrittenPacks: pack.rewrittenPacks,
    removedIndexes: indexes.removed,
  };
}

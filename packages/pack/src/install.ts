import { setMaxListeners } from 'node:events';
import { constants } from 'node:fs';
import {
  copyFile,
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, posix, resolve as resolvePath } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import { addTransferStats, emptyTransferStats, runLimited, throwIfAborted } from '@splintertree/oci';
import { type FetchStats, planFetch, type RecordSourceOptions, readRecordHealing } from './fetch-records.js';
import {
  type FinalizeOptions,
  finalizeTree,
  lockOutput,
  makeStaging,
  recoverOutput,
  stagingPath,
} from './finalize.js';
import type { ChunkRef, IndexRoot } from './format.js';
import { fileSystemError } from './fs-errors.js';
import type { IndexEntry } from './index-codec.js';
import { type KeyRing, keyForPack } from './index-reader.js';
import type { WorkJournal } from './journal.js';
import { carryUnowned, findUnowned, type KeepPolicy } from './keep.js';
import { assertNoLinkOnPath, prepareParent, safeRelativePath } from './paths.js';
import { assertPortable, caselessForm } from './portable.js';
import { decodeRecord, fileDigest } from './records.js';
import { REDO_FOLDER, RedoJournal, type RedoPlan } from './redo.js';
import { syncFolder } from './sync-folder.js';

/** Which tagged files a client installs: untagged files always, tagged ones when their value is chosen. */
export interface Selection {
  locale?: string | undefined;
  platform?: string | undefined;
}

/** What the output folder holds now, as the last install there left it. */
export interface InstalledTree {
  entries: IndexEntry[];
  /** When that install finished (ms since 1970): a file changed or created later is not trusted. */
  installedAt: number;
}

export interface InstallOptions extends Omit<RecordSourceOptions, 'packs'> {
  root: IndexRoot;
  entries: IndexEntry[];
  keys: KeyRing;
  output: string;
  replace: boolean;
  selection?: Selection | undefined;
  previous?: InstalledTree | undefined;
  /**
   * Where the install is noted while its staging folder exists, so that the next run of any command
   * cleans up after a kill, and Ctrl-C stops it before it publishes.
   */
  journal?: WorkJournal | undefined;
  /** The operating system installed for (default: this one); only Linux takes an unportable tree. */
  platform?: NodeJS.Platform | undefined;
  /** Passed to finalizeTree (tests kill the run between the two renames of --replace here). */
  checkpoint?: FinalizeOptions['checkpoint'];
  /**
   * Keep what `output` holds that `previous` did not install (a launcher's game folder: saves, settings,
   * mod loaders), refusing with FILE_NOT_OWNED an update that would overwrite any of it. Without this,
   * `output` is replaced as a whole.
   */
  keepUnowned?: KeepPolicy | undefined;
  /** Passed to finalizeTree: the swap's rename (a test double stands in for a file held open). */
  rename?: FinalizeOptions['rename'];
}

export interface InstallResult {
  files: number;
  bytes: number;
  /** Files hard-linked from the tree being replaced (unchanged, not rewritten). */
  kept: number;
  /** Files patched in place: only their changed bytes were written (under a redo log, see redo.ts). */
  patched: number;
  fetch: FetchStats;
}

/**
 * A file whose changed bytes are at most this many is patched in place under a redo log instead of
 * copied whole (the journal holds them, and is applied synchronously once the tree is published).
 */
const IN_PLACE_MAX_BYTES = 64 * 1024 * 1024;

/** Rebuilt files synced at once. */
const SYNC_CONCURRENCY = 32;

/** Chunks decoded ahead of the one being written, per file. */
const DECODE_AHEAD = 4;

/** The entries a selection installs. */
export function selectEntries(entries: IndexEntry[], selection: Selection = {}): IndexEntry[] {
  return entries.filter((entry) =>
    entry.tags.every((tag) => {
      const [kind, value] = splitTag(tag);
      if (kind === 'locale') return selection.locale === undefined || selection.locale === value;
      if (kind === 'platform') return selection.platform === undefined || selection.platform === value;
      return true;
    }),
  );
}

function splitTag(tag: string): [string, string] {
  const at = tag.indexOf(':');
  return at < 0 ? [tag, ''] : [tag.slice(0, at), tag.slice(at + 1)];
}

/**
 * Installs a version into `output`: the records its files need that the cache lacks are fetched, each
 * changed file is rebuilt in a staging folder beside `output` (chunks checked against their ids, the
 * file against its digest, then synced), unchanged files are hard-linked from the tree being replaced,
 * symlinks are made last, and the staging folder is swapped in. A failure leaves `output` as it was.
 */
export async function installTree(options: InstallOptions): Promise<InstallResult> {
  const platform = options.platform ?? process.platform;
  if (!options.root.portable && platform !== 'linux') {
    throw new SplinterError(
      'UNPORTABLE_PATH',
      `this version records paths for Linux file systems only: some cannot exist on ${platformName(platform)}`,
      { details: { reason: 'unportable-version', platform } },
    );
  }
  const selected = selectEntries(options.entries, options.selection);
  checkTree(selected);
  // A root that claims to be portable is held to it where it matters: a hostile or old publisher's
  // aux.txt or Readme.txt beside readme.txt is refused before anything is written.
  if (platform !== 'linux') assertPortable(selected.map((entry) => entry.path));
  const output = resolvePath(options.output);
  // One install at a time per output: what it links from the old tree and its renames stay its own.
  await mkdir(dirname(output), { recursive: true }).catch((error: unknown) => {
    throw fileSystemError(error);
  });
  const unlock = await lockOutput(output, () => {
    throwIfAborted(options.signal);
    options.journal?.throwIfInterrupted();
  });
  try {
    // A tree a killed --replace left set aside is put back before the plan reads it: what is unchanged
    // is linked, not fetched again, and the player's own files in it are seen and kept.
    recoverOutput(output);
    return await installLocked(options, selected, output);
  } finally {
    await options.cache.closeReaders();
    await unlock();
  }
}

async function installLocked(
  options: InstallOptions,
  selected: IndexEntry[],
  output: string,
): Promise<InstallResult> {
  const packs = new Map(options.root.packs.map((p) => [p.number, p]));
  const keyOf = keyForPack(options.root, options.keys);
  const previous = previousFiles(options.previous);

  const files = selected.filter((e): e is Extract<IndexEntry, { type: 'file' }> => e.type === 'file');
  const rebuild: typeof files = [];
  const keep = new Map<string, Extract<IndexEntry, { type: 'file' }>>();
  /** Files whose previous version is on disk as installed: a rebuild takes what it can from there. */
  const bases = new Map<string, InstalledFile>();
  for (const file of files) {
    const base = await installedBase(file, previous, output, options.previous?.installedAt);
    if (base) bases.set(file.path, base);
    if (base?.entry.digest.equals(file.digest) && base.entry.executable === file.executable)
      keep.set(file.path, file);
    else rebuild.push(file);
  }
  // Before any byte is fetched: an update that would overwrite a player's file is refused up front.
  const unowned = options.keepUnowned
    ? await findUnowned(output, options.previous?.entries, selected, options.keepUnowned)
    : [];
  // A file system without hard links (exFAT, FAT, some network shares) copies the unchanged files.
  const linkable = bases.size > 0 && (await canHardLink(output));
  if (keep.size > 0 && !linkable) {
    rebuild.push(...keep.values());
    keep.clear();
  }
  const needed = rebuild.flatMap((file) => {
    const base = bases.get(file.path);
    return base ? file.chunks.filter((ref) => !base.offsets.has(ref.id.toString('hex'))) : file.chunks;
  });
  for (const ref of needed) keyOf(ref); // every key is present before any byte is fetched
  // Files are written while later records are still arriving: a file waits only for its own records.
  // A failed install stops the download (`stopFetch`); a failed download fails the files waiting on it.
  const stopFetch = new AbortController();
  const source: RecordSourceOptions = {
    ...options,
    packs,
    signal: options.signal ? AbortSignal.any([options.signal, stopFetch.signal]) : stopFetch.signal,
  };
  setMaxListeners(0, source.signal!); // one listener per request under way
  const planned = await planFetch(needed, source);

  const noted = await options.journal?.note({ kind: 'install', output, since: Date.now() });
  const staging = await makeStaging(output).catch(async (error: unknown) => {
    await noted?.done();
    throw fileSystemError(error);
  });
  const fetching = planned.run();
  fetching.catch(() => undefined); // awaited below, after the files or after a failure
  const fetch: FetchStats = emptyTransferStats();
  const journal = options.journal;
  let published = false;
  const checkpoint: FinalizeOptions['checkpoint'] = (step) => {
    // Once the new tree is published an interrupt does not stop it: it finishes.
    if (step === 'redo') published = true;
    else {
      throwIfAborted(options.signal);
      journal?.throwIfInterrupted();
    }
    options.checkpoint?.(step);
  };
  const knownFolders = new Set<string>();
  const syncs = new SyncBatch();
  try {
    for (const entry of selected) {
      // The parents of `<folder>/.` are the folder and its parents.
      if (entry.type === 'directory') prepareParent(staging, `${entry.path}/.`, knownFolders);
    }
    let kept = 0;
    let patched = 0;
    let journals = 0;
    // In place only where the swap below replaces the tree the file lies in, and nothing else shares it.
    const redo =
      options.replace && linkable
        ? (plan: RedoPlan) => RedoJournal.create(staging, journals++, plan)
        : undefined;
    await runLimited(files, options.concurrency, async (file) => {
      // An abort stops between files: the staging folder is removed below, `output` is untouched.
      throwIfAborted(options.signal);
      const target = prepareParent(staging, file.path, knownFolders);
      if (keep.has(file.path) && (await linkFrom(join(output, file.path), target))) {
        kept += 1;
        return;
      }
      // A kept file that cannot be linked (EMLINK, say) is copied from itself, like a patched one.
      const how = await writeFileFromChunks(file, target, bases.get(file.path), redo, syncs, async (ref) => {
        await planned.cached(ref);
        return readRecordHealing(ref, source, (stored) => decodeRecord(ref, stored, keyOf(ref)), fetch);
      });
      if (how === 'patched') patched += 1;
    });
    addTransferStats(fetch, await fetching);
    // Synced once all are written, many at a time, so the file system commits them together (one
    // fsync per file as it was written cost a fresh 5,000-file install 5,005 serial journal commits).
    await syncs.flush();
    throwIfAborted(options.signal);
    for (const entry of selected) {
      if (entry.type === 'symlink')
        await symlink(entry.target, prepareParent(staging, entry.path, knownFolders));
    }
    await carryUnowned(output, staging, unowned);
    await syncFolder(staging);
    await finalizeTree(staging, output, {
      replace: options.replace,
      checkpoint,
      rename: options.rename,
      platform: options.platform,
    });
    await noted?.done();
    return {
      files: files.length,
      bytes: files.reduce((sum, f) => sum + f.size, 0),
      kept,
      patched,
      fetch,
    };
  } catch (error) {
    stopFetch.abort();
    await fetching.catch(() => undefined);
    await syncs.close();
    await rm(staging, { recursive: true, force: true });
    // Published but not finished (a journal could not be applied yet): the note stays, so the
    // cleanup of the next command to run after this one applies it (recoverOutput).
    if (!published) await noted?.done();
    throw fileSystemError(error);
  }
}

type FileEntry = Extract<IndexEntry, { type: 'file' }>;

/** An operating system as players know it. */
export function platformName(platform: NodeJS.Platform): string {
  if (platform === 'win32') return 'Windows';
  if (platform === 'darwin') return 'macOS';
  return platform;
}

function previousFiles(previous: InstalledTree | undefined): Map<string, FileEntry> {
  const map = new Map<string, FileEntry>();
  for (const entry of previous?.entries ?? []) if (entry.type === 'file') map.set(entry.path, entry);
  return map;
}

/** A file of the tree being replaced, as the last install wrote it. */
class InstalledFile {
  private chunkOffsets: Map<string, number> | undefined;

  constructor(
    readonly path: string,
    readonly entry: FileEntry,
    /** Its hard links: a file linked from elsewhere too is never patched in place. */
    readonly links: number,
  ) {}

  /** Chunk id (hex) -> its first offset in the file; worked out only for a file that is rebuilt. */
  get offsets(): Map<string, number> {
    if (!this.chunkOffsets) {
      this.chunkOffsets = new Map();
      let offset = 0;
      for (const ref of this.entry.chunks) {
        const hex = ref.id.toString('hex');
        if (!this.chunkOffsets.has(hex)) this.chunkOffsets.set(hex, offset);
        offset += ref.plainLength;
      }
    }
    return this.chunkOffsets;
  }
}

/**
 * The previous version of a file, if the tree being replaced holds it untouched since that install
 * (neither modified nor re-created: mtime and ctime no later than the install, the size it was given).
 * Such a file is as trusted as the records it was checked against: an unchanged one is linked, a
 * changed one is patched from it. Anything else, a player's edit included, is rebuilt from records,
 * which heals it.
 */
async function installedBase(
  file: FileEntry,
  previous: Map<string, FileEntry>,
  output: string,
  installedAt: number | undefined,
): Promise<InstalledFile | undefined> {
  const before = previous.get(file.path);
  if (!before || installedAt === undefined) return undefined;
  try {
    assertNoLinkOnPath(output, file.path);
    const path = join(output, file.path);
    const info = await lstat(path);
    if (
      !info.isFile() ||
      info.size !== before.size ||
      info.mtimeMs > installedAt ||
      info.ctimeMs > installedAt
    )
      return undefined;
    return new InstalledFile(path, before, info.nlink);
  } catch {
    return undefined;
  }
}

/** Whether the folder holding `output` takes hard links (probed with a staging file of its own, then removed). */
async function canHardLink(output: string): Promise<boolean> {
  const probe = stagingPath(output, 'linkprobe');
  try {
    await writeFile(probe, '');
    return await linkFrom(probe, `${probe}-2`);
  } catch {
    return false;
  } finally {
    await rm(probe, { force: true });
    await rm(`${probe}-2`, { force: true });
  }
}

async function linkFrom(source: string, target: string): Promise<boolean> {
  try {
    await link(source, target);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK' || code === 'ENOTSUP' || code === 'ENOSYS')
      return false;
    throw error;
  }
}

/**
 * Writes a file from its chunks, checked against the file digest (the caller syncs it). With the file's
 * installed previous version: chunks it holds are read from it instead of the cache, and when most of
 * the new file's bytes lie where they lay before (an edit in place), only the chunks that moved or
 * changed are written. Those go to a redo journal, the installed file itself linked into the staging
 * tree, when `redo` is given and they are few ('patched': the file changes once the tree is swapped in,
 * see redo.ts); else the old file is copied first (by the kernel, or as a reflink where the file system
 * shares blocks) and they are written over the copy.
 */
async function writeFileFromChunks(
  file: FileEntry,
  target: string,
  base: InstalledFile | undefined,
  redo: ((plan: RedoPlan) => Promise<RedoJournal>) | undefined,
  syncs: SyncBatch,
  record: (ref: ChunkRef) => Promise<Buffer>,
): Promise<'written' | 'patched'> {
  const inPlace = base ? unmovedChunks(file, base.entry) : new Set<number>();
  const copyFirst = base !== undefined && bytesOf(file, inPlace) * 2 >= file.size;
  const writes: Array<{ ref: ChunkRef; position: number }> = [];
  let position = 0;
  for (const [i, ref] of file.chunks.entries()) {
    if (!(copyFirst && inPlace.has(i))) writes.push({ ref, position });
    position += ref.plainLength;
  }
  const changed = writes.reduce((sum, write) => sum + write.ref.plainLength, 0);
  const patch =
    copyFirst &&
    redo !== undefined &&
    base.links === 1 &&
    base.entry.executable === file.executable &&
    changed <= IN_PLACE_MAX_BYTES &&
    (await linkFrom(base.path, target));
  const mode = file.executable ? 0o755 : 0o644;
  let sink: {
    put(bytes: Buffer, at: number): Promise<void>;
    finish(): Promise<void>;
    close(): Promise<void>;
  };
  if (patch) {
    const journal = await redo({
      path: file.path,
      size: file.size,
      writes: writes.map(({ ref, position: at }) => ({ position: at, length: ref.plainLength })),
    });
    sink = {
      put: (bytes) => journal.append(bytes),
      finish: () => journal.commit(),
      close: () => journal.abandon(),
    };
  } else {
    const created = copyFirst
      ? copyFile(base.path, target, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE).then(() =>
          open(target, 'r+'),
        )
      : open(target, 'wx', mode);
    let finished = false;
    const handle = await created.catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') throw new SplinterError('UNSAFE_PATH', `${file.path}: written twice`);
      throw fileSystemError(error, file.path);
    });
    sink = {
      put: async (bytes, at) => {
        await handle.write(bytes, 0, bytes.byteLength, at);
      },
      finish: async () => {
        if (copyFirst) {
          await handle.truncate(file.size);
          // A file created here has its mode (less the umask, as tar gives it); a copy has the old file's.
          await handle.chmod(mode);
        }
        finished = true;
      },
      // A whole file stays open until it is synced with others (see SyncBatch); a failed one closes.
      close: () => (finished ? syncs.hold(handle, file.path) : handle.close()),
    };
  }
  let old: FileHandle | undefined;
  const ahead: Array<Promise<Buffer>> = [];
  let failure: unknown;
  try {
    old = base && base.offsets.size > 0 ? await open(base.path, 'r') : undefined;
    const bytesOfChunk = (ref: ChunkRef): Promise<Buffer> => {
      const at = base?.offsets.get(ref.id.toString('hex'));
      return at === undefined || !old ? record(ref) : readExactly(old, at, ref.plainLength, base!.entry.path);
    };
    let next = 0;
    const refill = () => {
      while (ahead.length < DECODE_AHEAD && next < writes.length) {
        const read = bytesOfChunk(writes[next++]!.ref);
        read.catch(() => undefined); // awaited in order below
        ahead.push(read);
      }
    };
    refill();
    for (const { position: at } of writes) {
      const bytes = await ahead.shift()!;
      refill();
      await sink.put(bytes, at);
    }
    // Every chunk was checked against its id as it was decoded (or lies where the checked install put
    // it): the ids name the file.
    if (!fileDigest(file.chunks.map((ref) => ref.id)).equals(file.digest)) {
      throw new SplinterError(
        'DIGEST_MISMATCH',
        `${file.path}: rebuilt content does not match the file digest`,
      );
    }
    await sink.finish();
  } catch (error) {
    // Reads started ahead settle before their sources close (they would reopen a pack otherwise).
    await Promise.allSettled(ahead);
    // A write names no file: name the one of the tree.
    failure = fileSystemError(error, file.path);
  }
  // Each closes whatever the other does: a failed batch sync must not leak the installed file.
  const closed = await Promise.allSettled([sink.close(), old?.close()]);
  if (failure !== undefined) throw failure;
  const failed = closed.find((result) => result.status === 'rejected');
  if (failed) throw fileSystemError(failed.reason, file.path);
  return patch ? 'patched' : 'written';
}

/**
 * Written files held open until they are synced, SYNC_CONCURRENCY at a time: the file system commits
 * each batch together (one fsync per file as it was written cost a fresh 5,000-file install 5,005
 * serial journal commits), and no file is opened a second time to be synced.
 */
class SyncBatch {
  private held: Array<{ handle: FileHandle; path: string }> = [];

  async hold(handle: FileHandle, path: string): Promise<void> {
    this.held.push({ handle, path });
    if (this.held.length >= SYNC_CONCURRENCY) await this.flush();
  }

  /** Closes every file held, unsynced (an install that failed: its staging folder goes). */
  async close(): Promise<void> {
    const batch = this.held;
    this.held = [];
    await Promise.all(batch.map(({ handle }) => handle.close().catch(() => undefined)));
  }

  /** Syncs and closes every file held (each is closed, synced or not). */
  async flush(): Promise<void> {
    const batch = this.held;
    this.held = [];
    const results = await Promise.allSettled(
      batch.map(async ({ handle, path }) => {
        try {
          await handle.sync();
        } catch (error) {
          throw fileSystemError(error, path);
        } finally {
          await handle.close();
        }
      }),
    );
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/** Indexes of the file's chunks that the old version holds at the same offset. */
function unmovedChunks(file: FileEntry, before: FileEntry): Set<number> {
  const oldAt = new Map<number, Buffer>();
  let offset = 0;
  for (const ref of before.chunks) {
    oldAt.set(offset, ref.id);
    offset += ref.plainLength;
  }
  const unmoved = new Set<number>();
  offset = 0;
  for (const [i, ref] of file.chunks.entries()) {
    if (oldAt.get(offset)?.equals(ref.id)) unmoved.add(i);
    offset += ref.plainLength;
  }
  return unmoved;
}

function bytesOf(file: FileEntry, chunks: Set<number>): number {
  let bytes = 0;
  for (const i of chunks) bytes += file.chunks[i]!.plainLength;
  return bytes;
}

async function readExactly(handle: FileHandle, at: number, length: number, path: string): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(length);
  const { bytesRead } = await handle.read(bytes, 0, length, at);
  if (bytesRead !== length) {
    throw new SplinterError('SIZE_MISMATCH', `${path}: the installed file ends before byte ${at + length}`);
  }
  return bytes;
}

/**
 * Refuses a tree that cannot be installed safely: unsafe or repeated paths, entries below a file or a
 * symlink, and symlinks whose target, resolved through the tree's other symlinks whatever their order,
 * leaves the tree (`q -> .` then `p -> q/..`).
 */
export function checkTree(entries: readonly IndexEntry[]): void {
  const kinds = new Map<string, IndexEntry['type']>();
  const links = new Map<string, string>();
  for (const entry of entries) {
    const path = safeRelativePath(entry.path, 'index path');
    // Folded as a case-insensitive file system folds (NTFS, APFS, exFAT): `.Splinter-Redo` and
    // `.ſplinter-redo` are the same folder there.
    if (caselessForm(path.split('/')[0]!) === REDO_FOLDER)
      throw new SplinterError('UNSAFE_PATH', `${path}: ${REDO_FOLDER} is reserved for the installer`);
    if (kinds.has(path)) throw new SplinterError('UNSAFE_PATH', `${path}: listed twice in the index`);
    kinds.set(path, entry.type);
    if (entry.type === 'symlink') links.set(path, entry.target);
  }
  for (const path of kinds.keys()) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i += 1) {
      const parent = parts.slice(0, i).join('/');
      const kind = kinds.get(parent);
      if (kind === 'file' || kind === 'symlink') {
        throw new SplinterError('UNSAFE_LINK', `${path}: its parent ${parent} is a ${kind}, not a folder`);
      }
    }
  }
  for (const [path, target] of links) resolveInside(path, target, links);
}

const MAX_LINK_HOPS = 40;

/** Follows a symlink through the tree's symlinks; UNSAFE_LINK if any step leaves the tree. */
function resolveInside(path: string, target: string, links: Map<string, string>): void {
  // No file system can hold a link to nothing (symlink(2) answers ENOENT): refused before staging.
  if (target === '') throw new SplinterError('UNSAFE_LINK', `${path}: symlink with an empty target`);
  const outside = () =>
    new SplinterError('UNSAFE_LINK', `${path}: symlink ${JSON.stringify(target)} resolves outside the tree`);
  let hops = 0;
  const walk = (base: string[], text: string): string[] => {
    if (text.startsWith('/') || text.includes('\0') || text.includes('\\') || /^[A-Za-z]:/.test(text))
      throw outside();
    const stack = base.slice();
    for (const part of text.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length === 0) throw outside();
        stack.pop();
        continue;
      }
      stack.push(part);
      const linked = links.get(stack.join('/'));
      if (linked !== undefined) {
        if (++hops > MAX_LINK_HOPS) {
          throw new SplinterError('UNSAFE_LINK', `${path}: symlink chain longer than ${MAX_LINK_HOPS} hops`);
        }
        stack.pop();
        const resolved = walk(stack, linked);
        stack.length = 0;
        stack.push(...resolved);
      }
    }
    return stack;
  };
  walk(posix.dirname(path) === '.' ? [] : posix.dirname(path).split('/'), target);
}

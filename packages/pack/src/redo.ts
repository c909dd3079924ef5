import { createHash } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import { fileSystemError } from './fs-errors.js';
import { assertNoLinkOnPath, safeRelativePath } from './paths.js';
import { syncFolderSync } from './sync-folder.js';

/**
 * Patching a file in place under a redo log. An edit of a few MiB in a 4 GiB archive would otherwise
 * cost a copy of the whole archive and an fsync of it (longer than `cp` itself). Instead, the install
 * links the installed file into its staging tree and writes the file's new bytes to a journal in that
 * tree's `.splinter-redo` folder, synced. Nothing of the installed tree changes before the swap. Once
 * the staging tree is renamed in, the journals are applied to the (shared) file and removed; a run
 * killed before they are all applied leaves them in the published tree, and `recoverOutput`, which
 * every install runs first, applies them then. So a tree is the old one or, once the recovery that
 * follows any kill has run, the new one: the same guarantee as the swap, at the cost of a window in
 * which a killed install leaves the new tree with the patched files not yet patched.
 */
export const REDO_FOLDER = '.splinter-redo';

const MAGIC = Buffer.from('SPLREDO1', 'latin1');
const DIGEST_BYTES = 32;
/** What an apply reads of a journal at a time. */
const APPLY_BYTES = 1024 * 1024;

export interface RedoPlan {
  /** The file's path in the tree. */
  path: string;
  /** Its size once patched. */
  size: number;
  /** Where the new bytes go, in journal order. */
  writes: Array<{ position: number; length: number }>;
}

/**
 * A journal being written: `append` the planned writes' bytes in order, then `commit` (checks that
 * every planned byte came, seals it with its digest, syncs it).
 */
export class RedoJournal {
  private readonly hash = createHash('sha256');
  private written = 0;

  private constructor(
    private readonly handle: FileHandle,
    private readonly folder: string,
    private readonly expected: number,
    private readonly name: string,
  ) {}

  /** Starts the journal `index` of a staging tree for `plan`. */
  static async create(staging: string, index: number, plan: RedoPlan): Promise<RedoJournal> {
    const folder = join(staging, REDO_FOLDER);
    await mkdir(folder, { recursive: true, mode: 0o700 });
    const handle = await open(join(folder, `${String(index).padStart(8, '0')}.redo`), 'wx', 0o600);
    const header = Buffer.from(JSON.stringify(plan));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(header.byteLength);
    const journal = new RedoJournal(
      handle,
      folder,
      plan.writes.reduce((sum, write) => sum + write.length, 0),
      plan.path,
    );
    try {
      await journal.put(Buffer.concat([MAGIC, length, header]));
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    return journal;
  }

  async append(bytes: Buffer): Promise<void> {
    this.written += bytes.byteLength;
    await this.put(bytes);
  }

  async commit(): Promise<void> {
    try {
      if (this.written !== this.expected) {
        throw new SplinterError(
          'SIZE_MISMATCH',
          `${this.name}: redo journal got ${this.written} of ${this.expected} bytes`,
        );
      }
      await this.handle.write(this.hash.digest());
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
    // Its name too survives a power cut (the staging folder is synced, not the folders below it).
    syncFolderSync(this.folder);
  }

  async abandon(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }

  private async put(bytes: Buffer): Promise<void> {
    this.hash.update(bytes);
    let at = 0;
    while (at < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(bytes, at, bytes.byteLength - at);
      at += bytesWritten;
    }
  }
}

/**
 * Applies and removes the redo journals a published tree holds (see REDO_FOLDER); a no-op when it
 * holds none. Idempotent: a run killed while applying leaves the journal, which is applied again
 * whole. A journal that is not whole (it cannot be: it is synced before the swap that publishes it) is
 * dropped unapplied. Synchronous, like recoverOutput: it runs before anything else reads the tree.
 * Returns the paths patched.
 */
export function applyRedo(output: string): string[] {
  const folder = join(output, REDO_FOLDER);
  let names: string[];
  try {
    if (!lstatSync(folder).isDirectory()) return [];
    names = readdirSync(folder).filter((name) => name.endsWith('.redo'));
  } catch {
    return [];
  }
  const patched: string[] = [];
  for (const name of names.sort()) {
    const journal = join(folder, name);
    let path: string | undefined;
    try {
      path = applyJournal(output, journal);
    } catch (error) {
      throw fileSystemError(error, journal);
    }
    if (path !== undefined) patched.push(path);
    // Another run's recovery may have applied and removed it meanwhile: the same bytes either way.
    rmSync(journal, { force: true });
  }
  rmSync(folder, { recursive: true, force: true });
  syncFolderSync(output);
  return patched;
}

/**
 * Failures that may pass (a full disk, a file held open on Windows): the journal is kept for the next
 * run. Any other failure drops it: the install record still names the previous version, so the next
 * install does not trust a file it left unpatched or half patched (its mtime is newer), and rebuilds it.
 */
const RETRYABLE = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EBUSY', 'EAGAIN', 'EMFILE', 'ENFILE']);
const RETRYABLE_ON_WINDOWS = new Set(['EPERM', 'EACCES']);

function retryable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return RETRYABLE.has(code) || (process.platform === 'win32' && RETRYABLE_ON_WINDOWS.has(code));
}

function applyJournal(output: string, journal: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(journal, 'r');
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return undefined; // applied by another run
    throw error;
  }
  try {
    const plan = readPlan(fd, journal);
    if (!plan) return undefined;
    let path: string;
    let target: number;
    try {
      path = safeRelativePath(plan.plan.path, 'redo path');
      assertNoLinkOnPath(output, path);
      target = openSync(join(output, path), 'r+');
    } catch (error) {
      // A file gone since, a folder, or a path that is not ours to write: nothing to finish here.
      if (retryable(error)) throw error;
      return undefined;
    }
    try {
      const info = fstatSync(target);
      const end = plan.plan.writes.reduce((most, write) => Math.max(most, write.position + write.length), 0);
      // A patch grows a file only by the bytes it writes past its end.
      if (!info.isFile() || plan.plan.size > Math.max(info.size, end)) return undefined;
      const buffer = Buffer.allocUnsafe(APPLY_BYTES);
      let from = plan.dataAt;
      for (const { position, length } of plan.plan.writes) {
        for (let done = 0; done < length; ) {
          const read = readSync(fd, buffer, 0, Math.min(buffer.byteLength, length - done), from);
          if (read === 0) throw new SplinterError('SIZE_MISMATCH', `${journal}: ends early`);
          for (let at = 0; at < read; ) at += writeSync(target, buffer, at, read - at, position + done + at);
          done += read;
          from += read;
        }
      }
      ftruncateSync(target, plan.plan.size);
      fsyncSync(target);
    } catch (error) {
      if (retryable(error)) throw error;
      return undefined;
    } finally {
      closeSync(target);
    }
    return path;
  } finally {
    closeSync(fd);
  }
}

/** The plan of a whole journal and where its data starts, or undefined for a journal that is not whole. */
function readPlan(fd: number, journal: string): { plan: RedoPlan; dataAt: number } | undefined {
  const size = lstatSync(journal).size;
  if (size < MAGIC.byteLength + 4 + DIGEST_BYTES) return undefined;
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(APPLY_BYTES);
  for (let at = 0; at < size - DIGEST_BYTES; ) {
    const read = readSync(fd, buffer, 0, Math.min(buffer.byteLength, size - DIGEST_BYTES - at), at);
    if (read === 0) return undefined;
    hash.update(buffer.subarray(0, read));
    at += read;
  }
  const sealed = Buffer.alloc(DIGEST_BYTES);
  readSync(fd, sealed, 0, DIGEST_BYTES, size - DIGEST_BYTES);
  if (!hash.digest().equals(sealed)) return undefined;
  const head = Buffer.alloc(MAGIC.byteLength + 4);
  readSync(fd, head, 0, head.byteLength, 0);
  if (!head.subarray(0, MAGIC.byteLength).equals(MAGIC)) return undefined;
  const headerLength = head.readUInt32BE(MAGIC.byteLength);
  const header = Buffer.alloc(headerLength);
  readSync(fd, header, 0, headerLength, head.byteLength);
  let plan: unknown;
  try {
    plan = JSON.parse(header.toString('utf8'));
  } catch {
    return undefined;
  }
  const dataAt = head.byteLength + headerLength;
  if (!isPlan(plan)) return undefined;
  const data = plan.writes.reduce((sum, write) => sum + write.length, 0);
  if (dataAt + data + DIGEST_BYTES !== size) return undefined;
  return { plan, dataAt };
}

/** A journal names its own file and where its bytes go; anything else is not one of ours. */
function isPlan(value: unknown): value is RedoPlan {
  const plan = value as Partial<RedoPlan> | null;
  const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  return (
    typeof plan === 'object' &&
    plan !== null &&
    typeof plan.path === 'string' &&
    count(plan.size) &&
    Array.isArray(plan.writes) &&
    plan.writes.every(
      (write) =>
        count(write?.position) && count(write?.length) && write.position + write.length <= plan.size!,
    )
  );
}

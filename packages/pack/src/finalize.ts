import { lstatSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import { deadOwner, type OwnerGone, sweepOrphans } from './processes.js';
import { applyRedo } from './redo.js';
import { syncFolder } from './sync-folder.js';

export interface FinalizeOptions {
  /** Replace a non-empty `output` (the old tree is removed once the new one is in place). */
  replace?: boolean;
  /**
   * Called before each rename that publishes (`aside`: the old tree is set aside; `swap`: the new one
   * is renamed in) and, once it is in, before the files patched in place are (`redo`); throwing stops
   * there. An interrupted run stops this way before the swap, and tests kill here.
   */
  checkpoint?: (step: 'aside' | 'swap' | 'redo') => void;
  /**
   * The rename the swap makes (default fs.rename). On Windows it fails while a program holds a file of
   * the old tree open (a sharing violation); a test double of this one call stands in for that on Linux.
   */
  rename?: (from: string, to: string) => Promise<void>;
  /** The operating system (default: this one); on Windows EPERM/EACCES can mean a file is held open. */
  platform?: NodeJS.Platform | undefined;
}

const ASIDE_MARK = '.splinter-old-';
const STAGING_MARK = '.splinter-staging-';
const LOCK_MARK = '.splinter-lock-';
/** How often a second install into the same output looks whether the first one is done. */
const LOCK_POLL_MS = 50;

/**
 * Takes the output's install lock (a file beside it holding the owner's pid), waiting while another
 * live run holds it; a lock whose owner is gone is taken over. Two installs into one folder would
 * otherwise interleave their renames: the loser's old tree, set aside, stays beside the winner's new
 * one, the two sharing the inodes of the files the new one linked. Returns the release.
 */
export async function lockOutput(output: string, interrupted?: () => void): Promise<() => Promise<void>> {
  const lock = join(dirname(output), `${LOCK_MARK}${basename(output)}`);
  for (;;) {
    interrupted?.();
    try {
      const handle = await open(lock, 'wx', 0o644);
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(lock, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (clearStaleLock(lock, deadOwner)) continue;
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

/**
 * Removes the install lock `lock` if its owner is `gone`. True when the lock is not there any more
 * (removed here, or by its owner or another run meanwhile): taking it may be tried again at once.
 */
function clearStaleLock(lock: string, gone: OwnerGone): boolean {
  let owner: number;
  try {
    owner = Number(readFileSync(lock, 'utf8'));
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
  // An empty lock is one being written: its owner is about to be named.
  if (!Number.isInteger(owner) || owner <= 0 || !gone(owner)) return false;
  // Taken over by one run: the rename to a name of its own succeeds once.
  const trash = `${lock}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    renameSync(lock, trash);
  } catch {
    return true;
  }
  rmSync(trash, { force: true });
  return true;
}

/**
 * Moves a complete staging tree to `output`. An empty or missing `output` is taken over; a non-empty
 * one only with `replace`: it is renamed aside, the new tree renamed in, and the old one deleted. A run
 * killed between those two renames leaves the old tree aside; `recoverOutput` (run first by every
 * install) puts it back, so `output` never stays without a complete tree.
 */
export async function finalizeTree(
  staging: string,
  output: string,
  options: FinalizeOptions = {},
): Promise<void> {
  const existing = await lstat(output).catch(() => undefined);
  if (!existing) {
    await mkdir(dirname(output), { recursive: true });
    options.checkpoint?.('swap');
    await rename(staging, output);
    await syncFolder(dirname(output));
    return;
  }
  if (existing.isDirectory() && (await readdir(output)).length === 0) {
    options.checkpoint?.('swap');
    await rmdir(output);
    await rename(staging, output);
    await syncFolder(dirname(output));
    return;
  }
  if (!options.replace) {
    throw new SplinterError('OUTPUT_EXISTS', `${output} already exists and is not empty`, {
      details: { reason: 'not-empty', output },
    });
  }
  const aside = join(dirname(output), `${basename(output)}${ASIDE_MARK}${process.pid}-${Date.now()}`);
  const move = options.rename ?? rename;
  options.checkpoint?.('aside');
  try {
    await move(output, aside);
  } catch (error) {
    throw await heldOpen(error, output, move, options.platform ?? process.platform);
  }
  try {
    options.checkpoint?.('swap');
    await move(staging, output);
  } catch (error) {
    await move(aside, output);
    throw error;
  }
  await syncFolder(dirname(output));
  // Published: the files patched in place get their new bytes now (or, after a kill, from recoverOutput).
  options.checkpoint?.('redo');
  applyRedo(output);
  await rm(aside, { recursive: true, force: true });
}

/**
 * The old tree could not be set aside. When the reason may be a file another program holds open (EBUSY,
 * Windows' sharing violation; EPERM or EACCES on Windows), finds that file by moving each file of the
 * old tree aside and back (what is held open refuses), so the error names it: FILE_IN_USE. Nothing of
 * the old tree has moved then.
 */
async function heldOpen(
  error: unknown,
  output: string,
  move: (from: string, to: string) => Promise<void>,
  platform: NodeJS.Platform,
): Promise<unknown> {
  const code = (error as NodeJS.ErrnoException).code;
  const busy = (c: string | undefined) =>
    c === 'EBUSY' || (platform === 'win32' && (c === 'EPERM' || c === 'EACCES'));
  if (!busy(code)) return error;
  const probe = async (dir: string): Promise<string | undefined> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        const found = await probe(path);
        if (found) return found;
        continue;
      }
      const aside = `${path}.splinter-probe-${process.pid}`;
      try {
        await move(path, aside);
      } catch (refused) {
        if (busy((refused as NodeJS.ErrnoException).code)) return path;
        continue;
      }
      await move(aside, path);
    }
    return undefined;
  };
  const held = await probe(output).catch(() => undefined);
  if (!held) return error;
  const name = relative(output, held).split(sep).join('/');
  return new SplinterError(
    'FILE_IN_USE',
    `${name}: cannot be replaced while another program has it open (${code}); the installed tree is unchanged`,
    { cause: error, details: { path: name, errno: code } },
  );
}

/**
 * Cleans what a killed install left beside `output`: staging folders and old trees of owners that are
 * `gone`. When `output` is missing, the newest such old tree is renamed back first: a run killed
 * between the two renames of `--replace` is undone, never half done. A run killed after them is
 * finished: the redo journals it published are applied (see redo.ts). Synchronous, so an interrupted run
 * cleans up before any more of it runs. Returns what it removed.
 */
export function recoverOutput(output: string, gone: OwnerGone = deadOwner): string[] {
  const parent = dirname(output);
  const aside = new RegExp(`^${escapeRegExp(basename(output))}${escapeRegExp(ASIDE_MARK)}(\\d+)-(\\d+)`);
  if (!exists(output)) {
    let names: string[] = [];
    try {
      names = readdirSync(parent);
    } catch {
      // no parent: nothing was set aside
    }
    const newest = names
      .map((name) => ({ name, match: aside.exec(name) }))
      .filter((found) => found.match && gone(Number(found.match[1])))
      .sort((a, b) => Number(a.match![2]) - Number(b.match![2]))
      .pop();
    if (newest) {
      try {
        renameSync(join(parent, newest.name), output);
      } catch (error) {
        // Another run recovered it or published a tree meanwhile: either way output is whole.
        if (!exists(output)) throw error;
      }
    }
  }
  // A run killed once its tree was published leaves the files it patched in place to patch.
  if (exists(output)) applyRedo(output);
  clearStaleLock(join(parent, `${LOCK_MARK}${basename(output)}`), gone);
  return [
    ...sweepOrphans(parent, aside, gone),
    ...sweepOrphans(parent, new RegExp(`^${escapeRegExp(STAGING_MARK)}(\\d+)-`), gone),
  ];
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * A path beside `output` named as this run's staging (`tag` random unless given), so that
 * `recoverOutput` removes it once this run is gone.
 */
export function stagingPath(output: string, tag = Math.random().toString(36).slice(2)): string {
  return join(dirname(output), `${STAGING_MARK}${process.pid}-${tag}`);
}

/** A staging folder for `output`, named so that `recoverOutput` can tell whether its owner is alive. */
export async function makeStaging(output: string): Promise<string> {
  const path = stagingPath(output);
  await mkdir(path, { mode: 0o755 });
  return path;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

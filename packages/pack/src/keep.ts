import { link, lstat, mkdir, readdir, readlink, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import type { IndexEntry } from './index-codec.js';

/**
 * Paths a launcher never touches, whoever made them: what players and their tools keep in a game
 * folder. A version that ships anything under them is refused; whatever is there is always kept.
 */
export const PLAYER_PATHS: readonly string[] = ['saves', 'screenshots', 'user', 'BepInEx', 'mods'];

export interface KeepPolicy {
  /** Top-level names (or `a/b` prefixes) never written nor removed; default PLAYER_PATHS. */
  neverTouch?: readonly string[] | undefined;
}

/** Something in the output folder the launcher did not install, to carry into the new tree. */
export type Unowned =
  | { type: 'file' | 'directory'; path: string }
  | { type: 'symlink'; path: string; target: string };

const under = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`);

/**
 * What `output` holds that the last install there did not put there (`owned` is that install's entries;
 * none means nothing is owned), checked against the version about to be installed: a path both hold,
 * or one the new version needs as a folder that is a file here (or the reverse), is FILE_NOT_OWNED
 * before anything is downloaded. So is a new version shipping anything under a never-touched path.
 */
export async function findUnowned(
  output: string,
  owned: IndexEntry[] | undefined,
  incoming: IndexEntry[],
  policy: KeepPolicy,
): Promise<Unowned[]> {
  const neverTouch = policy.neverTouch ?? PLAYER_PATHS;
  // A file is the clearer example to name than the folder holding it.
  const ordered = [
    ...incoming.filter((e) => e.type !== 'directory'),
    ...incoming.filter((e) => e.type === 'directory'),
  ];
  for (const entry of ordered) {
    const prefix = neverTouch.find((p) => under(entry.path, p));
    if (prefix) {
      throw new SplinterError(
        'FILE_NOT_OWNED',
        `this version ships ${entry.path}, under ${prefix}/, which the launcher never touches (players' files)`,
        { details: { path: entry.path, neverTouch: prefix } },
      );
    }
  }
  const top = await lstat(output).catch(() => undefined);
  if (!top?.isDirectory()) return [];
  const ownedPaths = new Set((owned ?? []).map((e) => e.path));
  const incomingType = new Map(incoming.map((e) => [e.path, e.type]));
  const found: Unowned[] = [];
  const conflict = (path: string, why: string) =>
    new SplinterError(
      'FILE_NOT_OWNED',
      `the update would overwrite ${path}, which the launcher did not install (${why}): move it out of the game folder, then sync again`,
      { details: { path } },
    );
  const visit = async (relative: string): Promise<void> => {
    for (const name of (await readdir(join(output, relative))).sort()) {
      const path = relative === '' ? name : `${relative}/${name}`;
      const info = await lstat(join(output, path));
      const kept = neverTouch.some((p) => under(path, p));
      const wanted = incomingType.get(path);
      if (info.isDirectory()) {
        if (wanted !== undefined && wanted !== 'directory') throw conflict(path, 'a folder here');
        if (!ownedPaths.has(path) || kept) found.push({ type: 'directory', path });
        await visit(path);
        continue;
      }
      if (ownedPaths.has(path) && !kept) continue; // the launcher's: the new version decides
      if (wanted !== undefined)
        throw conflict(
          path,
          wanted === 'directory' ? 'the update needs a folder there' : 'the update ships a file there',
        );
      if (info.isSymbolicLink())
        found.push({ type: 'symlink', path, target: await readlink(join(output, path)) });
      else found.push({ type: 'file', path });
    }
  };
  await visit('');
  // A kept path below something the new version ships as a file or link cannot exist in the new tree.
  for (const item of found) {
    const parts = item.path.split('/');
    for (let i = 1; i < parts.length; i += 1) {
      const ancestor = parts.slice(0, i).join('/');
      const type = incomingType.get(ancestor);
      if (type !== undefined && type !== 'directory')
        throw conflict(item.path, `the update ships ${ancestor} as a file`);
    }
  }
  return found;
}

/**
 * Puts the unowned entries into the staging tree before it is swapped in: files hard-linked (the same
 * file, untouched, and still in the old tree should the install fail), links re-made, folders created.
 */
export async function carryUnowned(output: string, staging: string, items: Unowned[]): Promise<void> {
  for (const item of items) {
    const to = join(staging, item.path);
    if (item.type === 'directory') {
      await mkdir(to, { recursive: true });
      continue;
    }
    // Its folder may be one the new version no longer has.
    await mkdir(dirname(to), { recursive: true });
    if (item.type === 'symlink') await symlink(item.target, to);
    else await link(join(output, item.path), to);
  }
}

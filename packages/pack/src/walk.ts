import { lstat, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, posix, relative as relativePath, sep } from 'node:path';
import { SplinterError } from '@splintertree/errors';

export type TreeEntry =
  | { type: 'file'; path: string; absolutePath: string; size: number; executable: boolean }
  | { type: 'directory'; path: string }
  | { type: 'symlink'; path: string; target: string };

export interface WalkOptions {
  /**
   * Follow symlinks as `tar -h` and `cp -L` do: a link that stays inside the tree (relative, or
   * absolute to a place inside it) is kept as a relative link; any other is replaced by what it points
   * at, a file copied in or a folder walked. A link inside a followed folder means what it means from
   * where it really is: kept as a relative link if that place is in the tree or in a folder followed
   * into it, followed otherwise. A dangling outside link, or one to a folder above it or above a link
   * followed on the way (walking it would never end), is UNSAFE_LINK.
   */
  dereference?: boolean | undefined;
}

/**
 * Every entry below `root`, sorted by the byte order of its POSIX relative path. Refuses what a patch
 * must not carry: devices, fifos, sockets, and symlinks that are absolute or climb out of the tree
 * (unless `dereference` copies them in).
 */
export async function walkTree(root: string, options: WalkOptions = {}): Promise<TreeEntry[]> {
  const rootInfo = await lstat(root).catch((error: NodeJS.ErrnoException) => {
    throw new SplinterError('INVALID_ARGUMENT', `cannot read folder ${root}: ${error.code ?? error.message}`);
  });
  if (!rootInfo.isDirectory()) throw new SplinterError('INVALID_ARGUMENT', `${root} is not a folder`);
  const realRoot = options.dereference ? await realpath(root) : root;
  const entries: TreeEntry[] = [];
  /**
   * `relative` is the entry's path in the tree, `directory` where its entries are read from (a real
   * path when dereferencing), `followed` each folder link followed on the way there, outermost first.
   */
  const visit = async (relative: string, directory: string, followed: readonly Followed[]): Promise<void> => {
    const names = await readdir(directory);
    for (const name of names) {
      const path = relative === '' ? name : `${relative}/${name}`;
      const absolutePath = join(directory, name);
      const info = await lstat(absolutePath);
      if (info.isDirectory()) {
        entries.push({ type: 'directory', path });
        await visit(path, absolutePath, followed);
      } else if (info.isFile()) {
        entries.push(fileEntry(path, absolutePath, info));
      } else if (info.isSymbolicLink()) {
        const target = await readlink(absolutePath);
        if (!options.dereference) {
          assertLinkInside(path, target);
          entries.push({ type: 'symlink', path, target });
          continue;
        }
        // Below a followed link the tree's path is not where the link lives: a relative target means
        // what it means from the link's real folder, so only links of the tree itself are kept as read.
        if (followed.length === 0 && linkStaysInside(path, target)) {
          entries.push({ type: 'symlink', path, target });
          continue;
        }
        const real = await realpath(absolutePath).catch((error: NodeJS.ErrnoException) => {
          throw new SplinterError(
            'UNSAFE_LINK',
            `${path}: symlink ${JSON.stringify(target)} cannot be followed (${error.code ?? error.message})`,
          );
        });
        // A link to a place the tree has, in the tree itself or in a folder followed into it (the top
        // of either included): kept as the relative link it means there.
        const place = placeInTree(real, [{ folder: realRoot, path: '' }, ...followed]);
        if (place !== undefined) {
          entries.push({ type: 'symlink', path, target: posix.relative(posix.dirname(path), place) || '.' });
          continue;
        }
        const followedInfo = await stat(absolutePath);
        if (followedInfo.isFile()) {
          entries.push(fileEntry(path, absolutePath, followedInfo));
        } else if (followedInfo.isDirectory()) {
          // Walking a folder that holds this link, or one followed on the way here, would never end.
          const holders = [...followed.map((step) => step.from), directory];
          if (holders.some((holder) => pathWithin(real, holder) !== undefined)) {
            throw new SplinterError('UNSAFE_LINK', `${path}: symlink ${JSON.stringify(target)} makes a loop`);
          }
          entries.push({ type: 'directory', path });
          await visit(path, real, [...followed, { folder: real, path, from: directory }]);
        } else {
          throw new SplinterError(
            'UNSUPPORTED_ENTRY',
            `${path}: symlink to something that is not a file or folder`,
          );
        }
      } else {
        throw new SplinterError(
          'UNSUPPORTED_ENTRY',
          `${path}: only files, folders and symlinks can be packed`,
        );
      }
    }
  };
  await visit('', realRoot, []);
  return entries.sort((a, b) => compareBytes(a.path, b.path));
}

function fileEntry(
  path: string,
  absolutePath: string,
  info: { size: number; mode: number },
): TreeEntry & { type: 'file' } {
  return { type: 'file', path, absolutePath, size: info.size, executable: (info.mode & 0o111) !== 0 };
}

/** A folder link followed: its real `folder`, the `path` it has in the tree, the real folder it is `from`. */
interface Followed {
  folder: string;
  path: string;
  from: string;
}

/** Where the real path `real` is in the tree, if inside one of `places`. */
function placeInTree(
  real: string,
  places: ReadonlyArray<{ folder: string; path: string }>,
): string | undefined {
  for (const { folder, path } of places) {
    const inside = pathWithin(folder, real);
    if (inside !== undefined) return posix.join(path, inside);
  }
  return undefined;
}

/** `path` as a POSIX path relative to `base` ('' for `base` itself), or undefined when outside it. */
function pathWithin(base: string, path: string): string | undefined {
  const inside = relativePath(base, path);
  if (inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) return undefined;
  return inside.split(sep).join('/');
}

function linkStaysInside(path: string, target: string): boolean {
  try {
    assertLinkInside(path, target);
    return true;
  } catch {
    return false;
  }
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** A symlink at `path` pointing at `target` must be relative and stay inside the tree. */
function assertLinkInside(path: string, target: string): void {
  if (target.startsWith('/') || target.includes('\0')) {
    throw new SplinterError('UNSAFE_LINK', `${path}: symlink to absolute path ${JSON.stringify(target)}`);
  }
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (resolved === '..' || resolved.startsWith('../')) {
    throw new SplinterError('UNSAFE_LINK', `${path}: symlink ${JSON.stringify(target)} escapes the tree`);
  }
}

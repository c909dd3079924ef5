import { lstat, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { join, posix, relative as relativePath, sep } from 'node:path';
import { SplinterError } from '@splintertree/errors';

export type TreeEntry =
  | { type: 'file'; path: string; absolutePath: string; size: number; executable: boolean }
  | { type: 'directory'; path: string }
  | { type: 'symlink'; path: string; target: string };

export interface WalkOptions {
  /**
   * Follow symlinks as `tar -h` and `cp -L` do: a link that stays inside the tree (relative, or
   * absolute to a place inside it) is kept as a relative link; any other is replaced by what it points
   * at, a file copied in or a folder walked. A dangling or looping outside link is UNSAFE_LINK.
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
  /** `relative` is the entry's path in the tree, `directory` where its entries are read from. */
  const visit = async (relative: string, directory: string, followed: Set<string>): Promise<void> => {
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
        if (linkStaysInside(path, target)) {
          entries.push({ type: 'symlink', path, target });
          continue;
        }
        const real = await realpath(absolutePath).catch((error: NodeJS.ErrnoException) => {
          throw new SplinterError(
            'UNSAFE_LINK',
            `${path}: symlink ${JSON.stringify(target)} cannot be followed (${error.code ?? error.message})`,
          );
        });
        const inTree = relativePath(realRoot, real);
        if (inTree !== '' && !inTree.startsWith(`..${sep}`) && inTree !== '..' && !inTree.startsWith(sep)) {
          // An absolute link to a place inside the tree: kept as the relative link it means.
          const posixInTree = inTree.split(sep).join('/');
          entries.push({
            type: 'symlink',
            path,
            target: posix.relative(posix.dirname(path), posixInTree) || '.',
          });
          continue;
        }
        const followedInfo = await stat(absolutePath);
        if (followedInfo.isFile()) {
          entries.push(fileEntry(path, absolutePath, followedInfo));
        } else if (followedInfo.isDirectory()) {
          if (followed.has(real) || inTree === '') {
            throw new SplinterError('UNSAFE_LINK', `${path}: symlink ${JSON.stringify(target)} makes a loop`);
          }
          entries.push({ type: 'directory', path });
          await visit(path, real, new Set([...followed, real]));
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
  await visit('', root, new Set());
  return entries.sort((a, b) => compareBytes(a.path, b.path));
}

function fileEntry(
  path: string,
  absolutePath: string,
  info: { size: number; mode: number },
): TreeEntry & { type: 'file' } {
  return { type: 'file', path, absolutePath, size: info.size, executable: (info.mode & 0o111) !== 0 };
}

function linkStaysInside(path: string, target: string): boolean {
  try {
    assertLinkInside(path, target);
    return true;
  } catch {
    return false;
  }
}

export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** A symlink at `path` pointing at `target` must be relative and stay inside the tree. */
export function assertLinkInside(path: string, target: string): void {
  if (target.startsWith('/') || target.includes('\0')) {
    throw new SplinterError('UNSAFE_LINK', `${path}: symlink to absolute path ${JSON.stringify(target)}`);
  }
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (resolved === '..' || resolved.startsWith('../')) {
    throw new SplinterError('UNSAFE_LINK', `${path}: symlink ${JSON.stringify(target)} escapes the tree`);
  }
}

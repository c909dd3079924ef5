import { lstat, readdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { SplinterError } from '@splintertree/errors';

export type TreeEntry =
  | { type: 'file'; path: string; absolutePath: string; size: number; executable: boolean }
  | { type: 'directory'; path: string }
  | { type: 'symlink'; path: string; target: string };

/**
 * Every entry below `root`, sorted by the byte order of its POSIX relative path. Refuses what a patch
 * must not carry: devices, fifos, sockets, and symlinks that are absolute or climb out of the tree.
 */
export async function walkTree(root: string): Promise<TreeEntry[]> {
  const rootInfo = await lstat(root).catch((error: NodeJS.ErrnoException) => {
    throw new SplinterError('INVALID_ARGUMENT', `cannot read folder ${root}: ${error.code ?? error.message}`);
  });
  if (!rootInfo.isDirectory()) throw new SplinterError('INVALID_ARGUMENT', `${root} is not a folder`);
  const entries: TreeEntry[] = [];
  const visit = async (relative: string): Promise<void> => {
    const names = await readdir(join(root, relative));
    for (const name of names) {
      const path = relative === '' ? name : `${relative}/${name}`;
      const absolutePath = join(root, path);
      const info = await lstat(absolutePath);
      if (info.isDirectory()) {
        entries.push({ type: 'directory', path });
        await visit(path);
      } else if (info.isFile()) {
        entries.push({
          type: 'file',
          path,
          absolutePath,
          size: info.size,
          executable: (info.mode & 0o111) !== 0,
        });
      } else if (info.isSymbolicLink()) {
        const target = await readlink(absolutePath);
        assertLinkInside(path, target);
        entries.push({ type: 'symlink', path, target });
      } else {
        throw new SplinterError(
          'UNSUPPORTED_ENTRY',
          `${path}: only files, folders and symlinks can be packed`,
        );
      }
    }
  };
  await visit('');
  return entries.sort((a, b) => compareBytes(a.path, b.path));
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

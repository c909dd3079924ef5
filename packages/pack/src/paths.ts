import { lstatSync, mkdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { SplinterError } from '@splintertree/errors';

/**
 * A layer-supplied path must be relative, free of `..`, empty and `.` components and NUL, so that
 * joined to the staging folder it stays inside it.
 */
export function safeRelativePath(path: string, what: string): string {
  if (path === '' || path.includes('\0') || path.includes('\\')) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} is not a safe relative path`);
  }
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} is an absolute path`);
  }
  const parts = path.split('/');
  if (parts.some((part) => part === '..')) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} climbs out with '..'`);
  }
  if (parts.some((part) => part === '' || part === '.')) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} has empty or '.' components`);
  }
  return posix.normalize(path);
}

/**
 * Creates the parent folders of `relative` under `staging`, refusing to pass through any symlink, and
 * returns the full path. `knownFolders` holds folders this thread already checked: nothing can later
 * turn one into a symlink (symlink() refuses an existing path), so each is checked once.
 *
 * Synchronous on purpose: the folders are nearly always known already, and a thread-pool hand-off per
 * lstat would cost more than the call.
 */
export function prepareParent(staging: string, relative: string, knownFolders: Set<string>): string {
  const parts = relative.split('/');
  let current = staging;
  for (let index = 0; index < parts.length - 1; index += 1) {
    current = join(current, parts[index]!);
    if (knownFolders.has(current)) continue;
    let info = lstatSync(current, { throwIfNoEntry: false });
    if (!info) {
      // Files are written in parallel: another may create the same folder at this moment.
      try {
        mkdirSync(current, { mode: 0o755 });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      info = lstatSync(current);
    }
    if (info.isSymbolicLink()) {
      throw new SplinterError(
        'UNSAFE_LINK',
        `${relative}: would be written through the symlink ${parts.slice(0, index + 1).join('/')}`,
      );
    }
    if (!info.isDirectory()) throw new SplinterError('UNSAFE_PATH', `${relative}: a parent is not a folder`);
    knownFolders.add(current);
  }
  return join(staging, relative);
}

/** Refuses a path under `staging` any of whose components is a symlink. */
export function assertNoLinkOnPath(staging: string, relative: string): void {
  let current = staging;
  for (const part of relative.split('/')) {
    current = join(current, part);
    if (lstatSync(current).isSymbolicLink())
      throw new SplinterError('UNSAFE_LINK', `${relative}: path goes through a symlink`);
  }
}

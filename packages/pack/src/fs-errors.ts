import { isSplinterError, SplinterError } from '@splintertree/errors';

const MEANINGS: Record<
  string,
  { code: 'NO_SPACE' | 'PERMISSION_DENIED' | 'NAME_TOO_LONG' | 'UNSAFE_PATH'; what: string }
> = {
  ENOSPC: { code: 'NO_SPACE', what: 'no space left on the device' },
  EDQUOT: { code: 'NO_SPACE', what: 'disk quota exceeded' },
  EACCES: { code: 'PERMISSION_DENIED', what: 'permission denied' },
  EPERM: { code: 'PERMISSION_DENIED', what: 'operation not permitted' },
  EROFS: { code: 'PERMISSION_DENIED', what: 'read-only file system' },
  EBUSY: { code: 'PERMISSION_DENIED', what: 'the file is in use' },
  ENAMETOOLONG: { code: 'NAME_TOO_LONG', what: 'a name is too long for this file system' },
  EEXIST: { code: 'UNSAFE_PATH', what: 'the path exists already' },
  ENOTDIR: { code: 'UNSAFE_PATH', what: 'a parent is not a folder' },
};

/**
 * A file-system failure as a one-line SplinterError with a stable code (a full disk is NO_SPACE, not an
 * INTERNAL stack trace), naming `path` when given (a write's error names no file); anything else passes
 * through unchanged.
 */
export function fileSystemError(error: unknown, path?: string): unknown {
  if (isSplinterError(error)) return error;
  const errno = error as NodeJS.ErrnoException;
  const meaning = errno?.code ? MEANINGS[errno.code] : undefined;
  if (!meaning) return error;
  return new SplinterError(
    meaning.code,
    `${path ?? errno.path ?? 'a file'}: ${meaning.what} (${errno.code})`,
    {
      cause: error,
      details: { errno: errno.code, syscall: errno.syscall },
    },
  );
}

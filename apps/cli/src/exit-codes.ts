import type { ErrorCode } from '@splinter/errors';

/** Process exit codes. Documented in the README; keep the two in step. */
export const ExitCode = {
  Ok: 0,
  Internal: 1,
  Usage: 2,
  NotFound: 3,
  Integrity: 4,
  Signature: 5,
  Registry: 6,
  Conflict: 7,
  Locked: 8,
  Database: 9,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

const BY_CODE: Record<ErrorCode, ExitCodeValue> = {
  INVALID_ARGUMENT: ExitCode.Usage,
  INVALID_REFERENCE: ExitCode.Usage,
  INVALID_CONFIG: ExitCode.Usage,
  NOT_FOUND: ExitCode.NotFound,
  MANIFEST_UNKNOWN: ExitCode.NotFound,
  BLOB_UNKNOWN: ExitCode.NotFound,
  PATCH_UNKNOWN: ExitCode.NotFound,
  REALM_UNKNOWN: ExitCode.NotFound,
  DIGEST_MISMATCH: ExitCode.Integrity,
  SIZE_MISMATCH: ExitCode.Integrity,
  MANIFEST_INVALID: ExitCode.Integrity,
  MANIFEST_TOO_LARGE: ExitCode.Integrity,
  UNSUPPORTED_MEDIA_TYPE: ExitCode.Integrity,
  LAYOUT_INVALID: ExitCode.Integrity,
  UNSAFE_PATH: ExitCode.Integrity,
  UNSAFE_LINK: ExitCode.Integrity,
  UNSUPPORTED_ENTRY: ExitCode.Integrity,
  LAYER_TOO_LARGE: ExitCode.Integrity,
  ARCHIVE_INVALID: ExitCode.Integrity,
  OUTPUT_EXISTS: ExitCode.Usage,
  KEY_INVALID: ExitCode.Signature,
  KEY_PASSWORD_WRONG: ExitCode.Signature,
  KEY_UNSUPPORTED: ExitCode.Signature,
  SIGNATURE_MISSING: ExitCode.Signature,
  SIGNATURE_INVALID: ExitCode.Signature,
  SIGNATURE_UNTRUSTED: ExitCode.Signature,
  VERIFICATION_SKIPPED: ExitCode.Signature,
  REGISTRY_UNAUTHORIZED: ExitCode.Registry,
  REGISTRY_DENIED: ExitCode.Registry,
  REGISTRY_ERROR: ExitCode.Registry,
  REGISTRY_UNREACHABLE: ExitCode.Registry,
  RETRIES_EXHAUSTED: ExitCode.Registry,
  CREDENTIALS_ERROR: ExitCode.Registry,
  HEAD_CONFLICT: ExitCode.Conflict,
  PATCH_EXISTS: ExitCode.Conflict,
  REALM_MISMATCH: ExitCode.Conflict,
  INVALID_TRANSITION: ExitCode.Conflict,
  DECRYPTION_FAILED: ExitCode.Locked,
  KEY_LOCKED: ExitCode.Locked,
  KEY_REQUIRED: ExitCode.Locked,
  KEY_REVOKED: ExitCode.Locked,
  KEK_INVALID: ExitCode.Locked,
  KEK_MISSING: ExitCode.Locked,
  KEK_MISMATCH: ExitCode.Locked,
  DATABASE_ERROR: ExitCode.Database,
  MIGRATION_FAILED: ExitCode.Database,
  UNAUTHENTICATED: ExitCode.Registry,
  FORBIDDEN: ExitCode.Registry,
  RATE_LIMITED: ExitCode.Registry,
  INTERNAL: ExitCode.Internal,
};

export function exitCodeFor(code: ErrorCode): ExitCodeValue {
  return BY_CODE[code];
}

/**
 * Every failure splinter reports on purpose carries one of these codes. They are part of the public
 * contract: the CLI maps them to exit codes, the API to HTTP statuses. Add codes; never rename one.
 */
export const ERROR_CODES = [
  // input and configuration
  /** The command line itself: an unknown flag or command, a missing argument (CLI only). */
  'USAGE',
  'INVALID_ARGUMENT',
  'INVALID_REFERENCE',
  'INVALID_CONFIG',
  'NOT_FOUND',
  // content and registry
  'DIGEST_MISMATCH',
  'SIZE_MISMATCH',
  'MANIFEST_INVALID',
  'MANIFEST_TOO_LARGE',
  'MANIFEST_UNKNOWN',
  'BLOB_UNKNOWN',
  'UNSUPPORTED_MEDIA_TYPE',
  'REGISTRY_UNAUTHORIZED',
  'REGISTRY_DENIED',
  'REGISTRY_ERROR',
  'REGISTRY_UNREACHABLE',
  'RETRIES_EXHAUSTED',
  'REDIRECT_REFUSED',
  'RESPONSE_TOO_LARGE',
  'CREDENTIALS_ERROR',
  'LAYOUT_INVALID',
  // packing
  'UNSAFE_PATH',
  'UNPORTABLE_PATH',
  'UNSAFE_LINK',
  'UNSUPPORTED_ENTRY',
  'LAYER_TOO_LARGE',
  'ARCHIVE_INVALID',
  'OUTPUT_EXISTS',
  /** An update would overwrite a file the launcher did not install (a save, a mod loader's file). */
  'FILE_NOT_OWNED',
  'NO_SPACE',
  'PERMISSION_DENIED',
  'NAME_TOO_LONG',
  'FILE_IN_USE',
  // signing
  'KEY_INVALID',
  'KEY_PASSWORD_WRONG',
  'KEY_UNSUPPORTED',
  'SIGNATURE_MISSING',
  'SIGNATURE_INVALID',
  'SIGNATURE_UNTRUSTED',
  'VERIFICATION_SKIPPED',
  'TRUST_REQUIRED',
  /** A mod bundled by a patch is not signed by a key its realm trusts (push and activation). */
  'MOD_UNTRUSTED',
  // preload
  'DECRYPTION_FAILED',
  'KEY_LOCKED',
  'KEY_REQUIRED',
  'KEY_REVOKED',
  'KEK_INVALID',
  'KEK_MISSING',
  'KEK_MISMATCH',
  // signed releases (what a launcher refuses to install, each for its own reason)
  'RELEASE_MISSING',
  'RELEASE_INVALID',
  'RELEASE_UNTRUSTED',
  'RELEASE_EXPIRED',
  'RELEASE_ROLLBACK',
  'RELEASE_REALM_MISMATCH',
  'RELEASE_HEAD_MISMATCH',
  'RELEASE_KEYS_INVALID',
  // chain
  'HEAD_CONFLICT',
  'PATCH_EXISTS',
  'PATCH_UNKNOWN',
  'REALM_MISMATCH',
  'REALM_UNKNOWN',
  'INVALID_TRANSITION',
  'DATABASE_ERROR',
  'MIGRATION_FAILED',
  'SCHEMA_BEHIND',
  // api
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'RATE_LIMITED',
  'API_UNREACHABLE',
  'API_ERROR',
  // player tokens (JWTs from the studio's identity provider)
  'TOKEN_INVALID',
  'TOKEN_EXPIRED',
  'TOKEN_ISSUER_INVALID',
  'TOKEN_AUDIENCE_INVALID',
  'TOKEN_REALM_MISMATCH',
  'TOKEN_KEY_UNKNOWN',
  'TOKEN_ALGORITHM_REFUSED',
  'JWKS_UNAVAILABLE',
  // a run stopped by Ctrl-C (SIGINT) or SIGTERM, after cleaning up
  'INTERRUPTED',
  // anything not anticipated
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface SplinterErrorOptions {
  cause?: unknown;
  /** Structured facts for --json output and API problem bodies (never secrets). */
  details?: Record<string, unknown>;
}

/** The one error type splinter throws on purpose: a stable code plus a one-line message. */
export class SplinterError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: SplinterErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SplinterError';
    this.code = code;
    this.details = options.details;
  }
}

export function isSplinterError(value: unknown, code?: ErrorCode): value is SplinterError {
  // Checked structurally so that errors from a second copy of this package (source vs. dist) still match.
  if (!(value instanceof Error) || value.name !== 'SplinterError') return false;
  const valueCode = (value as { code?: unknown }).code;
  return typeof valueCode === 'string' && (code === undefined || valueCode === code);
}

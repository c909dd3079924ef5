import { type ErrorCode, isSplinterError } from '@splintertree/errors';

const STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  PATCH_UNKNOWN: 404,
  REALM_UNKNOWN: 404,
  RELEASE_MISSING: 404,
  KEY_REVOKED: 410,
  KEY_LOCKED: 423,
  RATE_LIMITED: 429,
  DATABASE_ERROR: 503,
  TOKEN_INVALID: 401,
  TOKEN_EXPIRED: 401,
  TOKEN_ISSUER_INVALID: 401,
  TOKEN_AUDIENCE_INVALID: 401,
  TOKEN_KEY_UNKNOWN: 401,
  TOKEN_ALGORITHM_REFUSED: 401,
  TOKEN_REALM_MISMATCH: 403,
  JWKS_UNAVAILABLE: 503,
  SCHEMA_BEHIND: 503,
};

/**
 * Refusals of a token the caller presented (every code answered 401): charged, as failures, to the
 * client address and to the token id or JWT subject it named.
 */
export function isAuthFailure(code: ErrorCode): boolean {
  return STATUS[code] === 401;
}

const TITLE: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  410: 'Gone',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  423: 'Locked',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance: string;
}

/**
 * An RFC 9457 problem body for any error: the SplinterError's code and message, else INTERNAL. The
 * status is the code's unless `status` names a more precise one (413 for INVALID_ARGUMENT).
 */
export function problemFor(error: unknown, instance: string, status?: number): Problem {
  const code: ErrorCode = isSplinterError(error) ? error.code : 'INTERNAL';
  status ??= STATUS[code] ?? 500;
  // Unexpected failures are logged in full; the caller hears only that one happened.
  const detail =
    isSplinterError(error) && status !== 500 ? error.message : 'internal error (see the server log)';
  return {
    type: `urn:splinter:error:${code}`,
    title: TITLE[status] ?? 'Error',
    status,
    detail,
    code,
    instance,
  };
}

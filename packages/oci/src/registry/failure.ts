import { type ErrorCode, SplinterError } from '@splintertree/errors';
import { MAX_ERROR_BODY_BYTES, readBodyLimited } from '../read-limited.js';
import type { RegistryResponse } from './client.js';
import { hasCauseCode } from './retry.js';

/** The SplinterError for a registry answer that was not what `what` needed, from its status and error body. */
export async function registryFailure(
  response: RegistryResponse,
  location: string,
  what: string,
): Promise<SplinterError> {
  let detail = '';
  let registryCode: string | undefined;
  let registryCodes: string[] = [];
  try {
    // HEAD answers and bodies already drained carry nothing to read.
    const consumed = (response.body as { bodyUsed?: boolean }).bodyUsed === true;
    const text = consumed
      ? ''
      : (
          await readBodyLimited(response.body, MAX_ERROR_BODY_BYTES, 'error body', { truncate: true })
        ).toString();
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
    registryCodes = (parsed.errors ?? []).flatMap((e) => (typeof e.code === 'string' ? [e.code] : []));
    registryCode = registryCodes[0];
    detail = (parsed.errors?.map((e) => `${e.code}: ${e.message}`).join('; ') ?? '').slice(0, 2000);
  } catch {
    // not a distribution error body
  }
  const code = codeFor(response.status, registryCode);
  // A refusal says which credential was tried (a file, a helper, anonymous), never the secret.
  const credential =
    (response.status === 401 || response.status === 403) && response.credentialSource
      ? `; credentials: ${response.credentialSource}`
      : '';
  return new SplinterError(
    code,
    `${location}: ${what}: HTTP ${response.status}${detail ? ` (${detail})` : ''}${credential}`,
    {
      details: {
        status: response.status,
        ...(registryCode ? { registryCode, registryCodes } : {}),
        ...(credential ? { credentialSource: response.credentialSource } : {}),
      },
    },
  );
}

function codeFor(status: number, registryCode: string | undefined): ErrorCode {
  if (registryCode === 'MANIFEST_UNKNOWN') return 'NOT_FOUND';
  if (registryCode === 'BLOB_UNKNOWN') return 'BLOB_UNKNOWN';
  if (registryCode === 'DIGEST_INVALID') return 'DIGEST_MISMATCH';
  if (registryCode === 'MANIFEST_INVALID' || registryCode === 'MANIFEST_BLOB_UNKNOWN')
    return 'MANIFEST_INVALID';
  if (status === 401) return 'REGISTRY_UNAUTHORIZED';
  if (status === 403) return 'REGISTRY_DENIED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 413) return 'MANIFEST_TOO_LARGE';
  return 'REGISTRY_ERROR';
}

const TLS_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|HOSTNAME_MISMATCH/;

/** A network error's message, saying so when it is a certificate the client does not trust. */
export function networkMessage(error: unknown): string {
  const message = (error as Error).message || String((error as { code?: string }).code);
  return isUntrustedCertificate(error)
    ? `${message} (TLS: the registry's certificate is not trusted)`
    : message;
}

/** `reason: 'tls-untrusted'` for a certificate the client does not trust: apps say how to trust it. */
export function networkDetails(error: unknown): Record<string, unknown> | undefined {
  return isUntrustedCertificate(error) ? { reason: 'tls-untrusted' } : undefined;
}

function isUntrustedCertificate(error: unknown): boolean {
  return hasCauseCode(error, (code) => TLS_ERROR.test(code));
}

/**
 * What a request the caller aborted ends with: the abort's reason when it is a SplinterError already
 * (a copy stopping its other transfers after a first failure), else INTERRUPTED.
 */
export function abortedError(signal: AbortSignal, what: string): SplinterError {
  const reason: unknown = signal.reason;
  if (reason instanceof SplinterError) return reason;
  return new SplinterError('INTERRUPTED', `${what}: stopped`, { cause: reason });
}

/** Runs `work`; if it fails after `signal` aborted, the failure is the abort's (see abortedError). */
export async function unlessAborted<T>(
  signal: AbortSignal | undefined,
  what: string,
  work: () => Promise<T>,
): Promise<T> {
  if (signal?.aborted) throw abortedError(signal, what);
  try {
    return await work();
  } catch (error) {
    if (signal?.aborted) throw abortedError(signal, what);
    throw error;
  }
}

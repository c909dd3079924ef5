import { ERROR_CODES, type ErrorCode, SplinterError } from '@splintertree/errors';
import { decodeKey32, KEY_BYTES, keyIdOf } from '@splintertree/seal';
import { canonicalId } from './ids.js';
import type { RealmView } from './launcher-types.js';

/**
 * Asks the launcher API for a patch key (`POST /launcher/patches/:id/unlock`). An answer other than
 * 200 becomes the SplinterError its problem body names; the key is checked against its key id.
 */
export async function requestUnlock(input: {
  api: string;
  token: string;
  patchId: string;
  backoff?: Backoff | undefined;
}): Promise<{ patchId: string; keyId: string; key: Uint8Array; ancestors: Uint8Array[] }> {
  if (canonicalId(input.patchId) === undefined) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `${JSON.stringify(input.patchId)} is not a patch id (a decimal number without leading zeros)`,
    );
  }
  const { body } = await callLauncherApi(
    input.api,
    input.token,
    'POST',
    `launcher/patches/${input.patchId}/unlock`,
    {},
    input.backoff,
  );
  const key = grantedKey(body);
  const listed = Array.isArray(body.ancestors) ? (body.ancestors as unknown[]).slice(0, 100_000) : [];
  const ancestors = listed.map((entry) => grantedKey((entry ?? {}) as Record<string, unknown>));
  return { patchId: input.patchId, keyId: keyIdOf(key), key, ancestors };
}

/** A key the API released, checked against the key id it names. */
function grantedKey(body: Record<string, unknown>): Uint8Array {
  const key = typeof body.key === 'string' ? decodeKey32(body.key) : undefined;
  if (!key || key.byteLength !== KEY_BYTES || body.keyId !== keyIdOf(key)) {
    throw new SplinterError('API_ERROR', 'launcher API answered 200 without a key matching its key id');
  }
  return key;
}

/**
 * How a call waits out `429 Too Many Requests`: never less than the server's `Retry-After` (or, without
 * one, 1 s doubling per retry), plus up to half again at random so that launchers refused together do
 * not come back together. A wait beyond `maxWaitMs` is not waited: the call fails with RATE_LIMITED
 * and `details.retryAfter`, for the caller's own schedule.
 */
export interface Backoff {
  /** Retries after a 429 (default 3; 0 never waits). */
  retries?: number;
  /** Longest single wait, in ms (default 30 s). */
  maxWaitMs?: number;
  /** Source of jitter in [0, 1) (default Math.random). */
  random?: () => number;
  /** Waits `ms` (default a timer); given, for example, to observe the waits. */
  wait?: (ms: number) => Promise<void>;
}

/** A realm view with the entity tag the API gave it. */
export interface TaggedRealmView {
  view: RealmView;
  etag: string | undefined;
  /** True when the API answered 304 and `view` is the `last` one passed in. */
  notModified: boolean;
}

/** The realm's head, chain and preloads from the launcher API (`GET /launcher/realms/:realm`). */
export async function requestRealmView(input: {
  api: string;
  token: string;
  realm: string;
  backoff?: Backoff | undefined;
}): Promise<RealmView> {
  return (await fetchRealmView(input)).view;
}

/**
 * The realm view, revalidated: with `last`, sends `If-None-Match: <last.etag>` and on `304 Not
 * Modified` hands back `last.view` (nothing is transferred or parsed).
 */
export async function fetchRealmView(input: {
  api: string;
  token: string;
  realm: string;
  last?: { etag: string; view: RealmView } | undefined;
  backoff?: Backoff | undefined;
}): Promise<TaggedRealmView> {
  const headers: Record<string, string> = input.last ? { 'if-none-match': input.last.etag } : {};
  const answer = await callLauncherApi(
    input.api,
    input.token,
    'GET',
    `launcher/realms/${encodeURIComponent(input.realm)}`,
    headers,
    input.backoff,
  );
  if (answer.status === 304 && input.last) {
    return { view: input.last.view, etag: input.last.etag, notModified: true };
  }
  const body = answer.body;
  if (!Array.isArray(body.chain) || !Array.isArray(body.preload) || body.realm !== input.realm) {
    throw new SplinterError('API_ERROR', `launcher API answered 200 without a view of realm ${input.realm}`);
  }
  return { view: body as unknown as RealmView, etag: answer.etag, notModified: false };
}

/**
 * The realm's newest signed release statement from the launcher API (`GET
 * /launcher/realms/:realm/release`), as DSSE JSON. Nothing in it is trusted until it verifies.
 */
export async function requestReleaseStatement(input: {
  api: string;
  token: string;
  realm: string;
}): Promise<string> {
  const { body } = await callLauncherApi(
    input.api,
    input.token,
    'GET',
    `launcher/realms/${encodeURIComponent(input.realm)}/release`,
  );
  return JSON.stringify(body);
}

async function callLauncherApi(
  api: string,
  token: string,
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string> = {},
  backoff: Backoff = {},
): Promise<{ status: number; body: Record<string, unknown>; etag: string | undefined }> {
  const retries = backoff.retries ?? 3;
  for (let attempt = 0; ; attempt++) {
    try {
      return await callOnce(api, token, method, path, headers);
    } catch (error) {
      const details = (error as SplinterError).details;
      if ((error as SplinterError).code !== 'RATE_LIMITED' || details?.status !== 429) throw error;
      const told = typeof details.retryAfter === 'number' ? details.retryAfter * 1000 : undefined;
      const base = told ?? 1000 * 2 ** attempt;
      if (attempt >= retries || base > (backoff.maxWaitMs ?? 30_000)) throw error;
      const ms = Math.round(base * (1 + 0.5 * (backoff.random ?? Math.random)()));
      await (backoff.wait ?? ((wait) => new Promise((resolve) => setTimeout(resolve, wait))))(ms);
    }
  }
}

async function callOnce(
  api: string,
  token: string,
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown>; etag: string | undefined }> {
  let base: URL;
  try {
    base = new URL(api);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new SplinterError('INVALID_ARGUMENT', `--api ${JSON.stringify(api)} is not an http(s) URL`);
  }
  const url = new URL(path, base.href.endsWith('/') ? base : `${base.href}/`);
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: { ...headers, authorization: `Bearer ${token}`, accept: 'application/json' },
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new SplinterError(
      'API_UNREACHABLE',
      `launcher API ${base.origin} did not answer: ${describe(error)}`,
      {
        cause: error,
      },
    );
  }
  const etag = response.headers.get('etag') ?? undefined;
  if (response.status === 304 && headers['if-none-match'] !== undefined) {
    await response.body?.cancel();
    return { status: 304, body: {}, etag };
  }
  const body = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  if (response.status !== 200 || body === undefined) {
    const code = typeof body?.code === 'string' && isErrorCode(body.code) ? body.code : 'API_ERROR';
    const detail = typeof body?.detail === 'string' ? body.detail : `HTTP ${response.status}`;
    throw new SplinterError(code, `launcher API: ${detail}`, {
      details: { status: response.status, ...retryAfterOf(response) },
    });
  }
  return { status: response.status, body, etag };
}

/** `Retry-After` in whole seconds (RFC 9110 10.2.3: delay-seconds or an HTTP date), when given. */
function retryAfterOf(response: Response): { retryAfter?: number } {
  const header = response.headers.get('retry-after')?.trim();
  if (!header) return {};
  if (/^\d{1,9}$/.test(header)) return { retryAfter: Number(header) };
  const at = Date.parse(header);
  return Number.isNaN(at) ? {} : { retryAfter: Math.max(0, Math.ceil((at - Date.now()) / 1000)) };
}

function isErrorCode(value: string): value is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(value);
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

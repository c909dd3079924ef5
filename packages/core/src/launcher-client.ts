import { ERROR_CODES, type ErrorCode, SplinterError } from '@splintertree/errors';
import { decodeKey32, KEY_BYTES, keyIdOf } from '@splintertree/seal';
import { canonicalId } from './ids.js';
import type { RealmView } from './launcher-service.js';

/**
 * Asks the launcher API for a patch key (`POST /launcher/patches/:id/unlock`). An answer other than
 * 200 becomes the SplinterError its problem body names; the key is checked against its key id.
 */
export async function requestUnlock(input: {
  api: string;
  token: string;
  patchId: string;
}): Promise<{ patchId: string; keyId: string; key: Uint8Array; ancestors: Uint8Array[] }> {
  if (canonicalId(input.patchId) === undefined) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `${JSON.stringify(input.patchId)} is not a patch id (a decimal number without leading zeros)`,
    );
  }
  const body = await callLauncherApi(
    input.api,
    input.token,
    'POST',
    `launcher/patches/${input.patchId}/unlock`,
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

/** The realm's head, chain and preloads from the launcher API (`GET /launcher/realms/:realm`). */
export async function requestRealmView(input: {
  api: string;
  token: string;
  realm: string;
}): Promise<RealmView> {
  const body = await callLauncherApi(
    input.api,
    input.token,
    'GET',
    `launcher/realms/${encodeURIComponent(input.realm)}`,
  );
  if (!Array.isArray(body.chain) || !Array.isArray(body.preload) || body.realm !== input.realm) {
    throw new SplinterError('API_ERROR', `launcher API answered 200 without a view of realm ${input.realm}`);
  }
  return body as unknown as RealmView;
}

async function callLauncherApi(
  api: string,
  token: string,
  method: 'GET' | 'POST',
  path: string,
): Promise<Record<string, unknown>> {
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
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
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
  const body = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  if (response.status !== 200 || body === undefined) {
    const code = typeof body?.code === 'string' && isErrorCode(body.code) ? body.code : 'API_ERROR';
    const detail = typeof body?.detail === 'string' ? body.detail : `HTTP ${response.status}`;
    throw new SplinterError(code, `launcher API: ${detail}`, { details: { status: response.status } });
  }
  return body;
}

function isErrorCode(value: string): value is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(value);
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

import { ERROR_CODES, type ErrorCode, SplinterError } from '@splinter/errors';
import { decodeKey32, KEY_BYTES, keyIdOf } from '@splinter/seal';

/**
 * Asks the launcher API for a patch key (`POST /launcher/patches/:id/unlock`). An answer other than
 * 200 becomes the SplinterError its problem body names; the key is checked against its key id.
 */
export async function requestUnlock(input: {
  api: string;
  token: string;
  patchId: string;
}): Promise<{ patchId: string; keyId: string; key: Uint8Array }> {
  let base: URL;
  try {
    base = new URL(input.api);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new SplinterError('INVALID_ARGUMENT', `--api ${JSON.stringify(input.api)} is not an http(s) URL`);
  }
  if (!/^\d{1,18}$/.test(input.patchId)) {
    throw new SplinterError('INVALID_ARGUMENT', `${JSON.stringify(input.patchId)} is not a patch id`);
  }
  const url = new URL(
    `launcher/patches/${input.patchId}/unlock`,
    base.href.endsWith('/') ? base : `${base.href}/`,
  );
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${input.token}`, accept: 'application/json' },
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
  if (response.status !== 200) {
    const code = typeof body?.code === 'string' && isErrorCode(body.code) ? body.code : 'API_ERROR';
    const detail = typeof body?.detail === 'string' ? body.detail : `HTTP ${response.status}`;
    throw new SplinterError(code, `launcher API: ${detail}`, { details: { status: response.status } });
  }
  const key = typeof body?.key === 'string' ? decodeKey32(body.key) : undefined;
  if (!key || key.byteLength !== KEY_BYTES || body?.keyId !== keyIdOf(key)) {
    throw new SplinterError('API_ERROR', 'launcher API answered 200 without a key matching its key id');
  }
  return { patchId: input.patchId, keyId: keyIdOf(key), key };
}

function isErrorCode(value: string): value is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(value);
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

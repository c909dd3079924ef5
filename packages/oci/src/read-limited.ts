import { type ErrorCode, SplinterError } from '@splintertree/errors';

/** Error bodies are only shown: the first 64 KiB say all a registry has to say. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** Token service answers carry a token of a few KiB. */
export const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;

export interface ReadLimitedOptions {
  /** Return the first `limit` bytes instead of failing (for bodies that are only shown). */
  truncate?: boolean;
  /** The code to fail with; default RESPONSE_TOO_LARGE. */
  code?: ErrorCode;
}

/**
 * Reads a body a peer sends into memory, at most `limit` bytes. At the limit it stops: the stream is
 * destroyed (closing the connection) rather than drained, and it fails with RESPONSE_TOO_LARGE naming
 * `what`, or with `truncate` returns the bytes read so far. Every body read whole goes through here.
 */
export async function readBodyLimited(
  body: AsyncIterable<Uint8Array>,
  limit: number,
  what: string,
  options: ReadLimitedOptions = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  // Leaving the loop early (break or throw) destroys the stream.
  for await (const chunk of body) {
    const room = limit - total;
    if (chunk.byteLength > room) {
      if (!options.truncate) {
        throw new SplinterError(
          options.code ?? 'RESPONSE_TOO_LARGE',
          `${what} exceeds the ${limit}-byte limit`,
          {
            details: { limit },
          },
        );
      }
      chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, room));
      total += room;
      break;
    }
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    total += chunk.byteLength;
  }
  return Buffer.concat(chunks, total);
}

/** Reads a whole stream into memory, refusing more than `limit` bytes. For manifests and small blobs only. */
export function readAllLimited(stream: AsyncIterable<Uint8Array>, limit: number): Promise<Buffer> {
  return readBodyLimited(stream, limit, 'content', { code: 'MANIFEST_TOO_LARGE' });
}

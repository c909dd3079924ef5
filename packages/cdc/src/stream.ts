import { nextCut } from './cut.js';
import { type ChunkerOptions, chunkerOptions, DEFAULT_CHUNKER } from './options.js';

/**
 * Cuts an async byte source into chunks, with the cut points nextCut gives over the whole input at once.
 * Each yielded Uint8Array is a view, valid only until the next iteration: either into the source's
 * own buffer (a chunk lying wholly inside one input buffer is never copied) or into an internal buffer
 * of 2 x maxSize that the next iteration overwrites. Copy a chunk to keep it. The source may reuse its
 * buffer once it is asked for the next one. Memory stays at that buffer plus the source's.
 */
export async function* chunkStream(
  source: AsyncIterable<Uint8Array>,
  options: Readonly<ChunkerOptions> = DEFAULT_CHUNKER,
): AsyncGenerator<Uint8Array> {
  const checked = chunkerOptions(options);
  const { maxSize } = checked;
  // pending[start..filled): the beginning of the next chunk (< maxSize bytes between inputs), kept
  // across input buffers; a cut is only asked for once maxSize bytes are in hand, so no byte is hashed
  // twice and nextCut never needs more.
  const pending = idlePending.get(maxSize)?.pop() ?? new Uint8Array(2 * maxSize);
  let start = 0;
  let filled = 0;
  try {
    for await (const input of source) {
      let at = 0;
      while (at < input.length) {
        if (start === filled) {
          while (input.length - at >= maxSize) {
            const length = nextCut(input, at, input.length, checked, false);
            yield input.subarray(at, at + length);
            at += length;
          }
          pending.set(input.subarray(at));
          start = 0;
          filled = input.length - at;
          break;
        }
        if (start + maxSize > pending.length) {
          pending.copyWithin(0, start, filled);
          filled -= start;
          start = 0;
        }
        const copiedFrom = at;
        const copiedTo = filled;
        const copied = Math.min(input.length - at, start + maxSize - filled);
        pending.set(input.subarray(at, at + copied), filled);
        filled += copied;
        at += copied;
        while (filled - start >= maxSize) {
          const length = nextCut(pending, start, filled, checked, false);
          yield pending.subarray(start, start + length);
          start += length;
        }
        if (start >= copiedTo) {
          // The next chunk begins in the copied part: go on from the input itself.
          at = copiedFrom + (start - copiedTo);
          start = filled = 0;
        }
      }
    }
    while (start < filled) {
      const length = nextCut(pending, start, filled, checked, true);
      yield pending.subarray(start, start + length);
      start += length;
    }
  } finally {
    const idle = idlePending.get(maxSize) ?? [];
    idlePending.set(maxSize, idle);
    if (idle.length < 4) idle.push(pending);
  }
}

/** Carry-over buffers of finished streams, by maxSize: many small files would otherwise each allocate one. */
const idlePending = new Map<number, Uint8Array[]>();

import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for the commands that download and unpack (`patch pull`, `mod pull`, `launcher sync`,
 * `activator run`). The CLI owns its process, so it may tune the collector; the libraries never do
 * (whoever embeds them owns that process).
 *
 * `--no-incremental-marking`: V8 starts incremental marking whenever the room left under its
 * old-generation limit is smaller than its young generation. A download keeps a heap of 8-20 MiB
 * while gigabytes of Buffers pass through, so that condition held after nearly every collection and
 * V8 marked the whole heap back to back: 40-50 mark-compacts in a 1 GiB pull, about 20% of the
 * samples on concurrent marking and sweeping. Without it V8 collects the old generation when its
 * limit is reached, in one pause of a few milliseconds on heaps this small. Measured on a 1 GiB pull,
 * in turns: 4.39-4.98 s instead of 4.88-5.31, peak RSS 155-159 MiB instead of 141-149; opening sealed
 * blobs from memory (`npm run bench -- seal`): 0.62-0.68 of openssl per CPU-second instead of
 * 0.47-0.51. Not for push: its peak RSS rose from 181-191 MiB to 194-204, past the 200 MiB it must
 * stay under. Not for `serve`, which gained nothing measurable. The flag is read each time V8 decides
 * whether to start marking, so setting it when a command starts takes effect.
 */
export const DOWNLOAD_V8_FLAGS: readonly string[] = ['--no-incremental-marking'];

export function applyDownloadV8Settings(): void {
  for (const flag of DOWNLOAD_V8_FLAGS) setFlagsFromString(flag);
}

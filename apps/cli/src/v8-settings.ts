import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings the `splinter` process runs with. The CLI owns its process, so it may tune the
 * collector; the libraries never do (whoever embeds them owns that process).
 *
 * `--no-incremental-marking`: V8 starts incremental marking whenever the room left under its
 * old-generation limit is smaller than its young generation. A transfer keeps a heap of 8-20 MiB
 * while gigabytes of Buffers pass through, so that condition holds after nearly every collection and
 * V8 marked the whole heap back to back: 40-50 mark-compacts in a 1 GiB pull, about 20% of the
 * samples on concurrent marking and sweeping. Without it, V8 collects the old generation only when
 * its limit is reached, in one atomic pause of a few milliseconds on heaps this small (measured on a
 * 1 GiB pull, in turns: 4.39-4.98 s instead of 4.88-5.31, peak RSS 155-159 MiB instead of 141-149;
 * opening sealed blobs from memory: 2,660 instead of 1,580-1,750 MiB per CPU-second; `splinter
 * serve` under load: the same requests per second and p99). The flag is read each time V8 decides
 * whether to start marking, so setting it at start-up takes effect.
 */
export const CLI_V8_FLAGS: readonly string[] = ['--no-incremental-marking'];

export function applyCliV8Settings(): void {
  for (const flag of CLI_V8_FLAGS) setFlagsFromString(flag);
}

import type { ProgressSink } from '@splintertree/core';

/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal and --json is off; otherwise
 * silent, so pipes and logs stay clean.
 */
export function createProgress(enabled: boolean): ProgressSink | undefined {
  if (!enabled || !process.stderr.isTTY) return undefined;
  let total = 0;
  let done = 0;
  let label = '';
  let lastDraw = 0;
  const draw = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastDraw < 100) return;
    lastDraw = now;
    const width = 30;
    const ratio = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(ratio * width);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    process.stderr.write(`\r${label} [${bar}] ${formatBytes(done)}/${formatBytes(total)} `);
  };
  return {
    begin(nextLabel, totalBytes) {
      label = nextLabel;
      total = totalBytes;
      done = 0;
      draw(true);
    },
    expect(bytes) {
      total += bytes;
      draw(false);
    },
    advance(bytes) {
      done += bytes;
      draw(false);
    },
    end() {
      draw(true);
      process.stderr.write('\n');
    },
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

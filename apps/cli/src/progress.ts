import type { ProgressSink } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';

export type ProgressMode = 'auto' | 'bar' | 'plain' | 'none';

const PROGRESS_MODES: readonly ProgressMode[] = ['auto', 'bar', 'plain', 'none'];

/**
 * Which progress to draw, as docker's and buildx's `--progress` choose: `--progress`, else
 * SPLINTER_PROGRESS, else `auto` = a bar when stderr is a terminal, plain lines when it is not (CI logs),
 * nothing under --json unless asked for.
 */
export function progressMode(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  json: boolean,
  isTTY = process.stderr.isTTY === true,
): Exclude<ProgressMode, 'auto'> {
  const chosen = flag ?? (env.SPLINTER_PROGRESS || undefined) ?? 'auto';
  if (!(PROGRESS_MODES as readonly string[]).includes(chosen)) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `--progress must be one of ${PROGRESS_MODES.join(', ')}, not ${JSON.stringify(chosen)}`,
    );
  }
  if (chosen !== 'auto') return chosen as Exclude<ProgressMode, 'auto'>;
  if (json) return 'none';
  return isTTY ? 'bar' : 'plain';
}

export function createProgress(
  mode: Exclude<ProgressMode, 'auto'>,
  options: { intervalMs?: number; now?: () => number; write?: (text: string) => void } = {},
): ProgressSink | undefined {
  const write = options.write ?? ((text: string) => process.stderr.write(text));
  const now = options.now ?? Date.now;
  if (mode === 'none') return undefined;
  if (mode === 'plain') return plainProgress(options.intervalMs ?? 5000, now, write);
  return barProgress(now, write);
}

/** A one-line bar redrawn in place (a terminal). */
function barProgress(now: () => number, write: (text: string) => void): ProgressSink {
  let total = 0;
  let done = 0;
  let label = '';
  let lastDraw = 0;
  const draw = (force: boolean) => {
    const at = now();
    if (!force && at - lastDraw < 100) return;
    lastDraw = at;
    const width = 30;
    const ratio = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(ratio * width);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    write(`\r${label} [${bar}] ${formatBytes(done)}/${formatBytes(total)} `);
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
      write('\n');
    },
  };
}

/**
 * For logs: one line every `intervalMs` while work goes on, with bytes, rate and ETA, and a last line
 * when work that printed any ends. Work shorter than the interval prints nothing.
 */
function plainProgress(intervalMs: number, now: () => number, write: (text: string) => void): ProgressSink {
  let total = 0;
  let done = 0;
  let label = '';
  let started = 0;
  let lastLine = 0;
  let printed = false;
  const rateOf = () => {
    const seconds = (now() - started) / 1000;
    return seconds > 0 ? done / seconds : 0;
  };
  const line = () => {
    const rate = rateOf();
    const percent = total > 0 ? ` (${Math.min(100, Math.floor((done / total) * 100))}%)` : '';
    const eta = total > done && rate > 0 ? formatSeconds((total - done) / rate) : '?';
    write(
      `splinter: ${label}: ${formatBytes(done)} of ${formatBytes(total)}${percent}, ${formatBytes(rate)}/s, ETA ${eta}\n`,
    );
    printed = true;
  };
  const tick = () => {
    const at = now();
    if (at - lastLine < intervalMs) return;
    lastLine = at;
    line();
  };
  return {
    begin(nextLabel, totalBytes) {
      label = nextLabel;
      total = totalBytes;
      done = 0;
      started = now();
      lastLine = started;
      printed = false;
    },
    expect(bytes) {
      total += bytes;
    },
    advance(bytes) {
      done += bytes;
      tick();
    },
    end() {
      if (!printed) return;
      const seconds = (now() - started) / 1000;
      write(
        `splinter: ${label}: done, ${formatBytes(done)} in ${formatSeconds(seconds)} (${formatBytes(rateOf())}/s)\n`,
      );
    },
  };
}

export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
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

import { describe, expect, it } from 'vitest';
import { createProgress, formatSeconds, progressMode } from '../src/progress.js';

describe('progress for logs (--progress plain)', () => {
  it('prints a line per interval with bytes, rate and ETA, and a last line', () => {
    let clock = 1_000_000;
    const lines: string[] = [];
    const sink = createProgress('plain', {
      intervalMs: 5000,
      now: () => clock,
      write: (t) => lines.push(t),
    })!;
    const MiB = 1024 * 1024;
    sink.begin('push patches/eu-1', 100 * MiB);
    clock += 1000;
    sink.advance(10 * MiB); // within the interval: nothing yet
    expect(lines).toEqual([]);
    clock += 4000;
    sink.advance(10 * MiB); // 20 MiB in 5 s: 4 MiB/s, 80 MiB left: 20 s
    clock += 2000;
    sink.advance(10 * MiB); // 2 s later: still within the next interval
    clock += 3000;
    sink.expect(20 * MiB); // a push learns more work as it packs
    sink.advance(10 * MiB); // 40 MiB of 120 MiB in 10 s: 4 MiB/s, ETA 20 s
    clock += 5000;
    sink.end();
    expect(lines).toEqual([
      'splinter: push patches/eu-1: 20.0 MiB of 100.0 MiB (20%), 4.0 MiB/s, ETA 20s\n',
      'splinter: push patches/eu-1: 40.0 MiB of 120.0 MiB (33%), 4.0 MiB/s, ETA 20s\n',
      'splinter: push patches/eu-1: done, 40.0 MiB in 15s (2.7 MiB/s)\n',
    ]);
  });

  it('says nothing about work shorter than the interval', () => {
    let clock = 0;
    const lines: string[] = [];
    const sink = createProgress('plain', {
      intervalMs: 5000,
      now: () => clock,
      write: (t) => lines.push(t),
    })!;
    sink.begin('pull', 10);
    clock += 100;
    sink.advance(10);
    sink.end();
    expect(lines).toEqual([]);
  });

  it('chooses a bar on a terminal, plain lines otherwise, none under --json unless asked', () => {
    expect(progressMode(undefined, {}, false, true)).toBe('bar');
    expect(progressMode(undefined, {}, false, false)).toBe('plain');
    expect(progressMode(undefined, {}, true, false)).toBe('none');
    expect(progressMode('plain', {}, true, true)).toBe('plain');
    expect(progressMode(undefined, { SPLINTER_PROGRESS: 'none' }, false, true)).toBe('none');
    expect(progressMode('bar', { SPLINTER_PROGRESS: 'none' }, false, false)).toBe('bar');
    expect(() => progressMode(undefined, { SPLINTER_PROGRESS: 'fancy' }, false, false)).toThrow(
      /--progress must be one of/,
    );
    expect(createProgress('none')).toBeUndefined();
    expect(formatSeconds(3725)).toBe('1h02m');
    expect(formatSeconds(75)).toBe('1m15s');
  });
});

import { setMaxListeners } from 'node:events';
import { openSplinter, type Settings, type Splinter, settingsFromEnvironment } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { ExitCode } from './exit-codes.js';
import { warn } from './output.js';
import { createProgress, progressMode } from './progress.js';
import { plainHttpOf, type RegistryFlags, registryAccessOf } from './registry-flags.js';

export interface GlobalOptions {
  json: boolean;
  debug: boolean;
}

export function globalOptions(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<{ json?: boolean; debug?: boolean }>();
  return { json: options.json === true, debug: options.debug === true };
}

export function loadSettings(): Settings {
  return settingsFromEnvironment(process.env);
}

/** How long Ctrl-C waits for the transfers it aborted to settle before it cleans up regardless. */
const ABORT_SETTLE_MS = 3000;

/**
 * Opens the core for one command and always closes it (database handles, HTTP agents). Opening cleans
 * up after killed runs. With `interruptible`, Ctrl-C (SIGINT) or SIGTERM stops the command cleanly:
 * the AbortSignal `run` passes to the core aborts (no new transfer starts, those under way are cut
 * short and clean up as any failure does, so staging and work folders go and an old tree set aside is
 * put back), then `interrupt` cancels any registry upload session still open and sweeps this run's
 * temporaries, and it exits with 130 (`splinter: INTERRUPTED`).
 */
export async function withSplinter<T>(
  command: Command,
  options: RegistryFlags & { interruptible?: boolean },
  run: (splinter: Splinter, settings: Settings, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const settings = loadSettings();
  const { json } = globalOptions(command);
  const { progress } = command.optsWithGlobals<{ progress?: string }>();
  const mode = progressMode(progress, process.env, json);
  const interval = Number(process.env.SPLINTER_PROGRESS_INTERVAL_MS);
  const splinter = await openSplinter({
    settings,
    plainHttp: plainHttpOf(options, settings),
    registryAccess: registryAccessOf(options, settings),
    progress: createProgress(
      mode,
      Number.isFinite(interval) && interval >= 0 ? { intervalMs: interval } : {},
    ),
    warn,
  });
  const controller = new AbortController();
  // Every request and wait under way listens on it (a few per parallel transfer): Node's leak warning
  // at 11 listeners would fire on every busy pull.
  setMaxListeners(0, controller.signal);
  let stopping = false;
  let running: Promise<unknown> = Promise.resolve();
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    controller.abort(new SplinterError('INTERRUPTED', 'stopped'));
    let timer: NodeJS.Timeout | undefined;
    // The run rejects once what it had under way has cleaned up; a request a store cannot cut short
    // costs at most ABORT_SETTLE_MS, after which the journal cleans up for it.
    void Promise.race([
      running.catch(() => undefined),
      new Promise((resolve) => {
        timer = setTimeout(resolve, ABORT_SETTLE_MS);
      }),
    ])
      .then(() => {
        clearTimeout(timer);
        return splinter.interrupt();
      })
      .catch(() => undefined)
      .finally(() => {
        process.stderr.write('splinter: INTERRUPTED: stopped; nothing of this run was left behind\n');
        if (json)
          process.stdout.write(`${JSON.stringify({ error: { code: 'INTERRUPTED', message: 'stopped' } })}\n`);
        process.exit(ExitCode.Interrupted);
      });
  };
  if (options.interruptible) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    const result = run(splinter, settings, controller.signal);
    running = result;
    return await result;
  } catch (error) {
    // Stopped work fails as it is cut short: the interrupt handler reports and exits, once.
    if (stopping) return new Promise<never>(() => undefined);
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!stopping) await splinter.close();
  }
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

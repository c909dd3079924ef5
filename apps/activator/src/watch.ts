import type { Splinter } from '@splintertree/core';
import { type ModSyncOptions, type ModSyncResult, syncMods } from './sync.js';

export interface ModWatchOptions extends ModSyncOptions {
  /** Told the result of every round, the first one included. */
  onRound: (result: ModSyncResult) => void;
  /** Told a round after the first that failed; the next change tries again. */
  onRoundError: (error: Error) => void;
  /** Told once, when the first round is done and changes are being heard. */
  onWatching?: () => void;
  /** Stops watching once aborted: the round under way finishes first. */
  signal: AbortSignal;
}

/**
 * Syncs the mods once (see syncMods), then again after every activation or rollback of the realm
 * that commits and, with release keys, every statement signed for it (a refresh can sign a head no
 * statement named yet). One round runs at a time; changes heard during a round fold into one more.
 * A first round that fails rejects at once. Resolves when `signal` aborts; rejects with the
 * listener's error (DATABASE_ERROR) when a LISTEN connection is lost, since changes may then be
 * missed: better to stop than keep a folder silently stale (a service manager restarts the watch).
 */
export async function watchMods(splinter: Splinter, options: ModWatchOptions): Promise<void> {
  const { onRound, onRoundError, onWatching, signal, ...sync } = options;
  onRound(await syncMods(splinter, sync));
  if (signal.aborted) return;

  let running: Promise<void> = Promise.resolve();
  let pending = false;
  const again = () => {
    if (pending) return;
    pending = true;
    running = running
      .then(async () => {
        pending = false;
        onRound(await syncMods(splinter, sync));
      })
      .catch((error: Error) => onRoundError(error));
  };

  let lost: (error: Error) => void = () => {};
  const listenerLost = new Promise<never>((_resolve, reject) => {
    lost = reject;
  });
  // A loss after the watch stopped has no one left to tell.
  listenerLost.catch(() => {});
  const stops: Array<() => Promise<void>> = [];
  try {
    stops.push(
      await splinter.watchHeadChanges(
        (change) => {
          if (change.realm === sync.realm) again();
        },
        (error) => lost(error),
      ),
    );
    if (sync.release) {
      stops.push(
        await splinter.watchReleaseStatements(
          (signed) => {
            if (signed.realm === sync.realm) again();
          },
          (error) => lost(error),
        ),
      );
    }
    onWatching?.();
    const aborted = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await Promise.race([listenerLost, aborted]);
  } finally {
    for (const stop of stops) await stop();
    await running;
  }
}

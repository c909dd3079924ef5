import { join } from 'node:path';
import type { ModSyncResult } from '@splintertree/activator';
import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { addReleaseTrustOptions, type ReleaseTrustFlags, releaseTrustFromFlags } from '../release-flags.js';
import { addTrustOptions, type TrustFlags, trustFromFlags } from '../signing-flags.js';
import { addTransferOptions, parseConcurrency } from './artifact.js';

export function registerActivatorCommands(program: Command): void {
  const activator = program
    .command('activator')
    .description("keep a folder at the mods pinned by a realm's active patch");
  addReleaseTrustOptions(
    addTrustOptions(
      addTransferOptions(
        activator
          .command('run')
          .description(
            "install the active patch's mods into --output/<name>; with --watch, again on every head change",
          )
          .requiredOption('--realm <realm>', 'the realm to follow')
          .requiredOption('--output <dir>', 'mods folder: each mod in a subfolder named after it')
          .option(
            '--watch',
            'keep running: re-sync when an activation or rollback commits (PostgreSQL NOTIFY)',
          ),
      ),
      true,
    ),
  ).action(async function (
    this: Command,
    flags: TrustFlags &
      ReleaseTrustFlags & {
        realm: string;
        output: string;
        watch?: boolean;
        plainHttp?: boolean;
        concurrency?: string;
      },
  ) {
    const concurrency = parseConcurrency(flags.concurrency);
    const trust = await trustFromFlags(flags);
    const release = await releaseTrustFromFlags(flags);
    const output = globalOptions(this);
    // One JSON document per round, one per line, so --watch output can be read as a stream.
    const report = (result: ModSyncResult) =>
      process.stdout.write(`${output.json ? JSON.stringify(result) : summary(result)}\n`);
    const { syncMods } = await import('@splintertree/activator');
    await withSplinter(this, flags, async (splinter, settings) => {
      const sync = () =>
        syncMods(splinter, {
          realm: flags.realm,
          output: flags.output,
          trust,
          stateDir: join(settings.home, 'activator'),
          concurrency,
          release,
        });
      report(await sync());
      if (!flags.watch) return;
      // One round at a time; head changes that arrive during a round fold into one more round.
      let running: Promise<void> = Promise.resolve();
      let pending = false;
      const again = () => {
        if (pending) return;
        pending = true;
        running = running.then(async () => {
          pending = false;
          report(await sync());
        });
        running.catch((error: Error) =>
          process.stderr.write(`splinter: warning: activator round failed: ${error.message}\n`),
        );
        running = running.catch(() => undefined);
      };
      // A lost LISTEN connection means head changes may be missed: stop with DATABASE_ERROR (exit 9)
      // rather than keep a folder silently stale; a service manager restarts the activator.
      let lost: ((error: Error) => void) | undefined;
      const listenerLost = new Promise<never>((_resolve, reject) => {
        lost = reject;
      });
      const stopHeads = await splinter.watchHeadChanges(
        (change) => {
          if (change.realm === flags.realm) again();
        },
        (error) => lost?.(error),
      );
      // With release keys, a refresh that signs a head no statement named yet is a reason to look again.
      const stopStatements = release
        ? await splinter.watchReleaseStatements(
            (signed) => {
              if (signed.realm === flags.realm) again();
            },
            (error) => lost?.(error),
          )
        : undefined;
      const stop = async () => {
        await stopHeads();
        await stopStatements?.();
      };
      try {
        await Promise.race([
          listenerLost,
          new Promise<void>((resolve) => {
            process.once('SIGINT', resolve);
            process.once('SIGTERM', resolve);
          }),
        ]);
      } finally {
        await stop();
        await running;
      }
    });
  });
}

function summary(result: ModSyncResult): string {
  const installed = result.installed.map((m) => m.name).join(', ') || 'nothing';
  const removed = result.removed.join(', ') || 'nothing';
  const head = result.head?.version ?? 'no active patch';
  return `${result.realm} at ${head}: installed ${installed}; kept ${result.kept.length}; removed ${removed}`;
}

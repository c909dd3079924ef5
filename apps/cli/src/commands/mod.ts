import type { Command } from 'commander';
import {
  addFetchOptions,
  addPullOptions,
  addPushOptions,
  type FetchFlags,
  type PullFlags,
  type PushFlags,
  runFetch,
  runPull,
  runPush,
} from './artifact.js';

export function registerModCommands(program: Command): void {
  const mod = program.command('mod').description('push and pull mods');

  addPushOptions(
    mod
      .command('push <dir>')
      .description('pack DIR as a mod, push it and sign it')
      .requiredOption('--name <name>', 'mod name')
      .requiredOption('--version <version>', 'mod version'),
    'SPLINTERTREE_MOD_REGISTRY',
  ).action(async function (this: Command, dir: string, flags: PushFlags & { name: string; version: string }) {
    await runPush(this, 'mod', dir, flags, { name: flags.name, version: flags.version });
  });

  addPullOptions(
    mod.command('pull <ref>').description('verify, download and unpack a mod into a folder'),
  ).action(async function (this: Command, reference: string, flags: PullFlags) {
    await runPull(this, 'mod', reference, flags);
  });

  addFetchOptions(
    mod
      .command('fetch <ref>')
      .description('verify a mod and download its blobs into the local cache, unpacking nothing'),
  ).action(async function (this: Command, reference: string, flags: FetchFlags) {
    await runFetch(this, 'mod', reference, flags);
  });
}

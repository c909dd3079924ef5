import type { Command } from 'commander';
import {
  addPullOptions,
  addPushOptions,
  type PullFlags,
  type PushFlags,
  registerFetchCommand,
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
      .requiredOption('--version <version>', 'mod version')
      .option('--base <ref>', 'an earlier version of the mod in the same repository: its chunks are reused'),
    'SPLINTERTREE_MOD_REGISTRY',
  ).action(async function (
    this: Command,
    dir: string,
    flags: PushFlags & { name: string; version: string; base?: string },
  ) {
    await runPush(this, 'mod', dir, flags, { name: flags.name, version: flags.version, base: flags.base });
  });

  addPullOptions(
    mod.command('pull <ref>').description('verify, download and unpack a mod into a folder'),
  ).action(async function (this: Command, reference: string, flags: PullFlags) {
    await runPull(this, 'mod', reference, flags);
  });

  registerFetchCommand(mod, 'mod');
}

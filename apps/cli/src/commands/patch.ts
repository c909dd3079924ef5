import type { Command } from 'commander';
import { collect } from '../context.js';
import {
  addPullOptions,
  addPushOptions,
  type PullFlags,
  type PushFlags,
  runPull,
  runPush,
} from './artifact.js';

export function registerPatchCommands(program: Command): void {
  const patch = program.command('patch').description('push, pull, activate and roll back patches');

  addPushOptions(
    patch
      .command('push <dir>')
      .description('pack DIR as a patch and push it')
      .requiredOption('--realm <realm>', 'realm the patch belongs to')
      .requiredOption('--version <version>', 'patch version, unique within the realm')
      .option('--parent <id|version>', "parent patch (default: the realm's current head)")
      .option('--mod <ref>', 'bundle a mod by reference (repeatable; pinned by digest)', collect, []),
    'SPLINTERTREE_PATCH_REGISTRY',
  ).action(async function (
    this: Command,
    dir: string,
    flags: PushFlags & { realm: string; version: string; parent?: string; mod: string[] },
  ) {
    await runPush(this, 'patch', dir, flags, {
      realm: flags.realm,
      version: flags.version,
      parent: flags.parent,
      mods: flags.mod,
    });
  });

  addPullOptions(
    patch.command('pull <ref>').description('verify, download and unpack a patch into a folder'),
  ).action(async function (this: Command, reference: string, flags: PullFlags) {
    await runPull(this, 'patch', reference, flags);
  });
}

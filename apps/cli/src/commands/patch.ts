import { userInfo } from 'node:os';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { collect, globalOptions, loadSettings, withSplinter } from '../context.js';
import { printResult } from '../output.js';
import {
  addReleaseSigningOptions,
  type ReleaseSigningFlags,
  releaseSigningFromFlags,
  withoutEnvelope,
} from '../release-flags.js';
import { addModTrustOptions, type ModTrustFlags, modTrustFromFlags } from '../signing-flags.js';
import {
  addPullOptions,
  addPushOptions,
  type PullFlags,
  type PushFlags,
  registerFetchCommand,
  runPull,
  runPush,
} from './artifact.js';
import { patchKeysOption, registerUnlockCommand } from './unlock.js';

const ACTOR_HELP =
  'who is acting, for the release log (default: $SPLINTER_ACTOR, $USER, $LOGNAME, the OS user name)';

export function registerPatchCommands(program: Command): void {
  const patch = program.command('patch').description('push, pull, activate and roll back patches');

  const push = addPushOptions(
    patch
      .command('push <dir>')
      .description('pack DIR as a patch, push it and register it in the realm chain')
      .requiredOption('--realm <realm>', 'realm the patch belongs to')
      .requiredOption('--version <version>', 'patch version, unique within the realm')
      .option('--parent <id|version>', "parent patch in the same realm (default: the realm's current head)")
      .option('--mod <ref>', 'bundle a mod by reference (repeatable; pinned by digest)', collect, [])
      .option('--preload', 'encrypt every layer under a new patch key; register with status preload'),
    'SPLINTERTREE_PATCH_REGISTRY',
  );
  addModTrustOptions(push).action(async function (
    this: Command,
    dir: string,
    flags: PushFlags &
      ModTrustFlags & { realm: string; version: string; parent?: string; mod: string[]; preload?: boolean },
  ) {
    await runPush(this, 'patch', dir, flags, {
      realm: flags.realm,
      version: flags.version,
      parent: flags.parent,
      mods: flags.mod,
      modTrust: await modTrustFromFlags(flags),
      preload: flags.preload === true,
    });
  });

  addPullOptions(
    patch
      .command('pull <ref>')
      .description('verify, download and unpack a patch into a folder')
      .option(
        '--key-file <file>',
        'a patch key (from patch unlock --output) for a preloaded patch; repeat for each sealed ancestor',
        collect,
        [],
      ),
  ).action(async function (this: Command, reference: string, flags: PullFlags & { keyFile: string[] }) {
    await runPull(this, 'patch', reference, flags, await patchKeysOption(flags.keyFile));
  });

  registerFetchCommand(patch, 'patch');

  registerUnlockCommand(patch);

  addReleaseSigningOptions(
    addModTrustOptions(patch.command('activate <id>'))
      .description(
        "make patch ID its realm's head (one atomic compare-and-set), after checking its mods' signatures",
      )
      .option('--realm <realm>', 'the realm (also lets ID be a version); refuse a patch of another realm')
      .option('--force', "activate even if the patch's chain does not contain the current head (logged)")
      .option('--actor <name>', ACTOR_HELP),
  ).action(async function (
    this: Command,
    id: string,
    flags: ReleaseSigningFlags &
      ModTrustFlags & { realm?: string; force?: boolean; actor?: string; plainHttp?: boolean },
  ) {
    const output = globalOptions(this);
    const modTrust = await modTrustFromFlags(flags);
    const release = await releaseSigningFromFlags(flags, loadSettings(), false);
    const result = await withSplinter(this, flags, (splinter) =>
      splinter.activate({
        patch: id,
        realm: flags.realm,
        force: flags.force === true,
        actor: actorOf(flags.actor),
        modTrust,
        release,
      }),
    );
    printResult(output, printable(result), headMoved(result));
  });

  addReleaseSigningOptions(
    addModTrustOptions(patch.command('rollback'))
      .description("move the realm's head back to the previous chain head (or --to an ancestor)")
      .requiredOption('--realm <realm>', 'realm to roll back')
      .option('--to <id|version>', 'an ancestor of the current head')
      .option('--actor <name>', ACTOR_HELP),
  ).action(async function (
    this: Command,
    flags: ReleaseSigningFlags & ModTrustFlags & { realm: string; to?: string; actor?: string },
  ) {
    const output = globalOptions(this);
    const modTrust = await modTrustFromFlags(flags);
    const release = await releaseSigningFromFlags(flags, loadSettings(), false);
    const result = await withSplinter(this, flags, (splinter) =>
      splinter.rollback({ realm: flags.realm, to: flags.to, actor: actorOf(flags.actor), modTrust, release }),
    );
    printResult(output, printable(result), headMoved(result));
  });

  patch
    .command('list')
    .description("list a realm's patches")
    .requiredOption('--realm <realm>', 'realm')
    .action(async function (this: Command, flags: { realm: string }) {
      const output = globalOptions(this);
      const patches = await withSplinter(this, {}, (splinter) => splinter.listPatches(flags.realm));
      printResult(
        output,
        { realm: flags.realm, patches },
        patches.map((p) => `${p.id}\t${p.version}\t${p.status}\tparent=${p.parent ?? '-'}\t${p.reference}`),
      );
    });

  patch
    .command('history')
    .description("a realm's release log (activations and rollbacks)")
    .requiredOption('--realm <realm>', 'realm')
    .action(async function (this: Command, flags: { realm: string }) {
      const output = globalOptions(this);
      const releases = await withSplinter(this, {}, (splinter) => splinter.history(flags.realm));
      printResult(
        output,
        { realm: flags.realm, releases },
        releases.map(
          (r) =>
            `#${r.seq}\t${r.action}${r.forced ? ' (forced)' : ''}\t${r.fromHead ?? '-'} -> ${r.toHead ?? '-'}\t${r.actor}\t${r.at}`,
        ),
      );
    });

  patch
    .command('revoke <id>')
    .description('revoke a patch for good (never the current head)')
    .option('--realm <realm>', 'realm, to name the patch by version')
    .action(async function (this: Command, id: string, flags: { realm?: string }) {
      const output = globalOptions(this);
      const result = await withSplinter(this, {}, (splinter) => splinter.revoke(id, flags.realm));
      printResult(output, result, [`revoked ${result.id} (${result.realm} ${result.version})`]);
    });
}

interface HeadMove {
  realm: string;
  seq: string;
  fromHead: string | null;
  toHead: string;
  statement?: { sequence: string; expiresAt: string; envelope: string };
}

function headMoved(result: HeadMove): string[] {
  const lines = [
    `${result.realm}: head ${result.fromHead ?? '(none)'} -> ${result.toHead} (release #${result.seq})`,
  ];
  if (result.statement)
    lines.push(
      `signed release statement #${result.statement.sequence}, valid until ${result.statement.expiresAt}`,
    );
  return lines;
}

/** --json shows the statement's number and times; the envelope itself is for `release show`. */
function printable<T extends HeadMove>(result: T): T {
  return result.statement ? ({ ...result, statement: withoutEnvelope(result.statement) } as T) : result;
}

/**
 * Who acts, for the release log: `--actor`, else SPLINTER_ACTOR, else USER / LOGNAME, else the
 * operating system's name for this uid: containers and CI jobs often run with no USER at all.
 */
export function actorOf(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const actor = nonEmpty(flag) ?? nonEmpty(env.SPLINTER_ACTOR) ?? nonEmpty(env.USER) ?? nonEmpty(env.LOGNAME);
  if (actor) return actor;
  let name: string | undefined;
  try {
    name = nonEmpty(userInfo().username);
  } catch {
    // A uid with no passwd entry (docker run --user 12345): userInfo() throws.
  }
  if (name) return name;
  throw new SplinterError(
    'INVALID_ARGUMENT',
    `no actor: uid ${process.getuid?.() ?? '?'} has no user name; pass --actor NAME or set SPLINTER_ACTOR`,
  );
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

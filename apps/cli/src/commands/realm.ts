import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult } from '../output.js';
import { addTrustOptions, type TrustFlags, trustedKeysFromFlags } from '../signing-flags.js';
import { actorOf } from './patch.js';

export function registerRealmCommands(program: Command): void {
  const realm = program.command('realm').description('realms and their chains');
  realm
    .command('show <realm>')
    .description("a realm's head and the end of its chain (its nearest ancestors), root-most first")
    .action(async function (this: Command, name: string) {
      const output = globalOptions(this);
      const result = await withSplinter(this, {}, (splinter) => splinter.showRealm(name));
      printResult(output, result, [
        `realm ${result.realm}: head ${result.head?.id ?? '(none)'} ${result.head?.version ?? ''}`,
        ...(result.omitted > 0
          ? [`  (${result.omitted} older ancestors not shown: splinter patch list)`]
          : []),
        ...result.chain.map((p) => `  ${p.id}\t${p.version}\t${p.status}\t${p.digest}`),
        ...result.mods.map((m) => `  mod ${m.reference}`),
      ]);
    });

  const trust = realm
    .command('trust')
    .description(
      'the keys a realm trusts to sign the mods its patches bundle (checked at push and activate)',
    );
  addTrustOptions(
    trust
      .command('set')
      .description("store the realm's trusted mod keys (replacing any); push --mod and activate check them")
      .requiredOption('--realm <realm>', 'realm')
      .option('--actor <name>', 'who is acting (default as for patch activate)'),
    false,
  ).action(async function (this: Command, flags: TrustFlags & { realm: string; actor?: string }) {
    const keys = await trustedKeysFromFlags(flags);
    const actor = actorOf(flags.actor);
    const result = await withSplinter(this, {}, (splinter) => splinter.setModTrust(flags.realm, keys, actor));
    printResult(globalOptions(this), result, [
      `realm ${result.realm} trusts ${result.keys.length} mod key(s): ${result.keys.map((k) => k.keyId).join(', ')}`,
    ]);
  });
  trust
    .command('show')
    .description("the realm's trusted mod keys")
    .requiredOption('--realm <realm>', 'realm')
    .action(async function (this: Command, flags: { realm: string }) {
      const result = await withSplinter(this, {}, (splinter) => splinter.modTrust(flags.realm));
      printResult(
        globalOptions(this),
        { realm: flags.realm, trust: result },
        result === null
          ? [`realm ${flags.realm} trusts no mod keys (push --mod and activate refuse its mods)`]
          : [...result.keys.map((k) => `key ${k.keyId}`), `set by ${result.setBy} at ${result.setAt}`],
      );
    });
  trust
    .command('clear')
    .description("forget the realm's trusted mod keys (its patches' mods are refused until set again)")
    .requiredOption('--realm <realm>', 'realm')
    .action(async function (this: Command, flags: { realm: string }) {
      const cleared = await withSplinter(this, {}, (splinter) => splinter.clearModTrust(flags.realm));
      printResult(globalOptions(this), { realm: flags.realm, cleared }, [
        cleared ? `realm ${flags.realm} trusts no mod keys now` : `realm ${flags.realm} had no mod keys`,
      ]);
    });
}

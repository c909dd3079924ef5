import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult } from '../output.js';

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
}

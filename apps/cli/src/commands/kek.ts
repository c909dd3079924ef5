import { generateKek, rotateKekFromFile } from '@splintertree/core';
import type { Command } from 'commander';
import { globalOptions, withSplinter } from '../context.js';
import { printResult } from '../output.js';

export function registerKekCommands(program: Command): void {
  const kek = program.command('kek').description('the key-encryption key that wraps preload keys at rest');
  kek
    .command('generate')
    .description('print a new random KEK (base64), for SPLINTER_KEK or a SPLINTER_KEK_FILE')
    .action(function (this: Command) {
      const value = generateKek();
      printResult(globalOptions(this), { kek: value }, [value]);
    });
  kek
    .command('rotate')
    .description('re-wrap every stored patch key from the current KEK to a new one, in one transaction')
    .requiredOption('--new-kek-file <file>', 'file holding the new KEK (base64 or hex)')
    .action(async function (this: Command, flags: { newKekFile: string }) {
      const output = globalOptions(this);
      const result = await withSplinter(this, {}, (splinter, settings) =>
        rotateKekFromFile(splinter, settings, flags.newKekFile),
      );
      printResult(output, result, [`re-wrapped ${result.keys} keys: ${result.from} -> ${result.to}`]);
    });
}

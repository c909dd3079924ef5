import { generateKeyPairFiles } from '@splintertree/core';
import type { Command } from 'commander';
import { globalOptions, loadSettings } from '../context.js';
import { printResult } from '../output.js';
import { readPassword } from '../password.js';

export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description('signing keys (cosign-compatible)');
  key
    .command('generate')
    .description('write PREFIX.key (encrypted, mode 0600) and PREFIX.pub, as cosign generate-key-pair does')
    .option('--output-key-prefix <prefix>', 'file name prefix', 'cosign')
    .action(async function (this: Command, flags: { outputKeyPrefix: string }) {
      const output = globalOptions(this);
      const password = await readPassword(loadSettings().keyPassword, true);
      const result = await generateKeyPairFiles(flags.outputKeyPrefix, password);
      printResult(output, result, [
        `Private key written to ${result.privateKeyFile}`,
        `Public key written to ${result.publicKeyFile}`,
      ]);
    });
}

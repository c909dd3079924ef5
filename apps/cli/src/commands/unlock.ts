import { readPatchKeyFile, requestUnlock, writeKeyFile } from '@splintertree/core';
import type { Command } from 'commander';
import { globalOptions, loadSettings } from '../context.js';
import { addTokenOptions, launcherToken, type TokenFlags } from '../launcher-token.js';
import { printResult } from '../output.js';

export function registerUnlockCommand(patch: Command): void {
  addTokenOptions(
    patch
      .command('unlock <id>')
      .description("ask the launcher API for a preloaded patch's key (released once the patch is active)")
      .requiredOption('--api <url>', 'launcher API base URL, e.g. http://127.0.0.1:8080'),
    'the patch realm',
  )
    .option('--output <file>', 'write the key (base64, mode 0600) to FILE instead of printing it')
    .action(async function (this: Command, id: string, flags: TokenFlags & { api: string; output?: string }) {
      const output = globalOptions(this);
      const token = await launcherToken(flags, loadSettings());
      const unlocked = await requestUnlock({ api: flags.api, token, patchId: id });
      const key = Buffer.from(unlocked.key).toString('base64');
      if (flags.output !== undefined) {
        await writeKeyFile(flags.output, unlocked.key);
        printResult(output, { patchId: id, keyId: unlocked.keyId, keyFile: flags.output }, [
          `key ${unlocked.keyId} written to ${flags.output}`,
        ]);
      } else {
        printResult(output, { patchId: id, keyId: unlocked.keyId, key }, [key]);
      }
    });
}

/** `--key-file` of `patch pull`: read at the edge, passed down as bytes. */
export async function patchKeysOption(files: string[]): Promise<Uint8Array[]> {
  return Promise.all(files.map((file) => readPatchKeyFile(file)));
}

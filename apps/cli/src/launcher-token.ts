import { open } from 'node:fs/promises';
import type { Settings } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';

/** Far more than a token (`spl_<id>_<43 characters>`): a larger file is the wrong file. */
const TOKEN_FILE_LIMIT = 4096;

export interface TokenFlags {
  token?: string;
  tokenFile?: string;
}

/** --token-file and --token, and the help line that names SPLINTER_TOKEN. */
export function addTokenOptions(command: Command, whose: string): Command {
  return command
    .option('--token-file <file>', `file holding the launcher token of ${whose} (splinter token create)`)
    .option(
      '--token <token>',
      'the launcher token itself: other users can read it in ps; prefer --token-file',
    )
    .addHelpText(
      'after',
      '\nThe launcher token is read from --token-file or --token, else from the SPLINTER_TOKEN environment variable.',
    );
}

/** The token of --token-file, --token or SPLINTER_TOKEN (one flag at most). */
export async function launcherToken(
  flags: TokenFlags,
  settings: Pick<Settings, 'launcherToken'>,
): Promise<string> {
  if (flags.token !== undefined && flags.tokenFile !== undefined) {
    throw new SplinterError('INVALID_ARGUMENT', 'give --token or --token-file, not both');
  }
  const token =
    flags.tokenFile !== undefined
      ? await readTokenFile(flags.tokenFile)
      : (flags.token ?? settings.launcherToken);
  if (token === undefined || token === '') {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      'a launcher token is needed: --token-file FILE, or SPLINTER_TOKEN in the environment (splinter token create makes one)',
    );
  }
  return token;
}

async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    const file = await open(path, 'r');
    try {
      const buffer = Buffer.alloc(TOKEN_FILE_LIMIT + 1);
      const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, 0);
      if (bytesRead > TOKEN_FILE_LIMIT) {
        throw new SplinterError(
          'INVALID_ARGUMENT',
          `--token-file ${path} is larger than ${TOKEN_FILE_LIMIT} bytes: not a launcher token`,
        );
      }
      text = buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await file.close();
    }
  } catch (error) {
    if (error instanceof SplinterError) throw error;
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `--token-file ${path} cannot be read: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  const token = text.trim();
  if (token === '') throw new SplinterError('INVALID_ARGUMENT', `--token-file ${path} is empty`);
  return token;
}

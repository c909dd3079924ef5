import { openSplinter, type Settings, type Splinter, settingsFromEnvironment } from '@splintertree/core';
import type { Command } from 'commander';
import { createProgress } from './progress.js';
import { plainHttpOf, type RegistryFlags, registryAccessOf } from './registry-flags.js';

export interface GlobalOptions {
  json: boolean;
  debug: boolean;
}

export function globalOptions(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<{ json?: boolean; debug?: boolean }>();
  return { json: options.json === true, debug: options.debug === true };
}

export function loadSettings(): Settings {
  return settingsFromEnvironment(process.env);
}

/** Opens the core for one command and always closes it (database handles, HTTP agents). */
export async function withSplinter<T>(
  command: Command,
  options: RegistryFlags,
  run: (splinter: Splinter, settings: Settings) => Promise<T>,
): Promise<T> {
  const settings = loadSettings();
  const { json } = globalOptions(command);
  const splinter = await openSplinter({
    settings,
    plainHttp: plainHttpOf(options, settings),
    registryAccess: registryAccessOf(options, settings),
    progress: createProgress(!json),
    warn: (message) => process.stderr.write(`splinter: warning: ${message}\n`),
  });
  try {
    return await run(splinter, settings);
  } finally {
    await splinter.close();
  }
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

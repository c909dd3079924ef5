import { createRequire } from 'node:module';
import { Command, Option } from 'commander';
import { registerActivatorCommands } from './commands/activator.js';
import { registerCacheCommands } from './commands/cache.js';
import { registerCompletionCommand } from './commands/completion.js';
import { registerDbCommands } from './commands/db.js';
import { registerInspectCommand } from './commands/inspect.js';
import { registerKekCommands } from './commands/kek.js';
import { registerKeyCommands } from './commands/key.js';
import { registerLauncherCommands } from './commands/launcher.js';
import { registerLoginCommands } from './commands/login.js';
import { registerModCommands } from './commands/mod.js';
import { registerPatchCommands } from './commands/patch.js';
import { registerRealmCommands } from './commands/realm.js';
import { registerReleaseCommands } from './commands/release.js';
import { registerServeCommand } from './commands/serve.js';
import { registerSignatureCommands } from './commands/signature.js';
import { registerTokenCommands } from './commands/token.js';
import { addHelpExamples } from './help-examples.js';
import { captureUsageErrors } from './usage.js';

/** The published package's own version, read at run time so a release needs one edit. */
const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

export function buildProgram(): Command {
  const program = new Command('splinter')
    .description(
      'Deliver game patches and mods through OCI registries: signed, preloadable, atomically activated.',
    )
    .version(VERSION)
    .addOption(new Option('--json', 'print machine-readable JSON on stdout'))
    .addOption(new Option('--debug', 'print stack traces for errors'))
    .addOption(progressOption())
    .enablePositionalOptions()
    .exitOverride();
  registerPatchCommands(program);
  registerRealmCommands(program);
  registerReleaseCommands(program);
  registerKeyCommands(program);
  registerModCommands(program);
  registerSignatureCommands(program);
  registerInspectCommand(program);
  registerServeCommand(program);
  registerLauncherCommands(program);
  registerActivatorCommands(program);
  registerTokenCommands(program);
  registerKekCommands(program);
  registerLoginCommands(program);
  registerCacheCommands(program);
  registerCompletionCommand(program);
  registerDbCommands(program);
  addOutputOptions(program);
  captureUsageErrors(program);
  addHelpExamples(program);
  return program;
}

/**
 * --json and --debug work before the command and after it (`splinter patch push ... --json`), and on a
 * group called alone (`splinter patch --json` answers its usage error in JSON).
 */
function addOutputOptions(command: Command): void {
  for (const sub of command.commands) {
    sub.addOption(new Option('--json', 'print machine-readable JSON on stdout'));
    sub.addOption(new Option('--debug', 'print stack traces for errors'));
    sub.addOption(progressOption());
    addOutputOptions(sub);
  }
}

function progressOption(): Option {
  return new Option(
    '--progress <mode>',
    'progress on stderr: bar, plain (a line every 5 s, for logs), none; default: bar on a terminal, else plain',
  ).choices(['auto', 'bar', 'plain', 'none']);
}

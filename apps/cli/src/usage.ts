import type { Command, CommanderError } from 'commander';
import { ExitCode, type ExitCodeValue } from './exit-codes.js';
import type { OutputOptions } from './output.js';

/** The command whose parsing failed, and commander's message, recorded as commander reports it. */
let failure: { command: Command; message: string } | undefined;

/**
 * Routes commander's own error output through `reportUsageError`: every command records itself as the
 * one that failed instead of printing (commander copies no closure per command, so each gets its own).
 */
export function captureUsageErrors(command: Command): void {
  command.configureOutput({
    outputError: (message) => {
      failure = { command, message };
    },
  });
  for (const sub of command.commands) captureUsageErrors(sub);
}

export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at; at = at.parent) names.unshift(at.name());
  return names.join(' ');
}

/**
 * A usage error as docker prints one: one line `splinter: USAGE: <what>` and a hint naming the command's
 * help (`See 'splinter patch push --help'.`), never the whole help; with --json also
 * `{ "error": { "code": "USAGE", "message", "details": { "reason" } } }` on stdout, as every other error.
 * Help and --version are not failures; a group called without its subcommand prints its help (stderr).
 */
export function reportUsageError(error: CommanderError, options: OutputOptions): ExitCodeValue {
  if (error.exitCode === 0) return ExitCode.Ok;
  const reason = error.code.replace(/^commander\./, '');
  const message =
    reason === 'help'
      ? 'missing command'
      : (failure?.message ?? error.message)
          .trim()
          .replace(/^error: /, '')
          .replace(/\s*\n\s*/g, ' ');
  const command = failure?.command;
  failure = undefined;
  if (reason !== 'help') {
    process.stderr.write(`splinter: USAGE: ${message}\n`);
    if (command) process.stderr.write(`See '${commandPath(command)} --help'.\n`);
  }
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ error: { code: 'USAGE', message, details: { reason } } })}\n`);
  }
  return ExitCode.Usage;
}

import type { TransferStats } from '@splintertree/core';
import { isSplinterError } from '@splintertree/errors';
import { ExitCode, type ExitCodeValue, exitCodeFor } from './exit-codes.js';
import { hintFor } from './hints.js';

export interface OutputOptions {
  json: boolean;
  debug: boolean;
}

/** Prints a command's result: `json` as one JSON document on stdout, otherwise the human lines. */
export function printResult(options: OutputOptions, json: unknown, human: string[]): void {
  if (options.json) {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  for (const line of human) process.stdout.write(`${line}\n`);
}

/** A transfer, push or pull, in the field names of its --json `transfer` object. */
export function transferLine(stats: TransferStats): string {
  const mounted = stats.mounted > 0 ? `, ${stats.mounted} mounted` : '';
  return `${stats.transferred} transferred, ${stats.reused} reused${mounted}; ${stats.bytes} bytes in ${stats.requests} requests`;
}

/** A warning line on stderr, and the CLI's hint for its `details.reason` on the next line. */
export function warn(message: string, details?: Record<string, unknown>): void {
  process.stderr.write(`splinter: warning: ${message}\n`);
  const hint = hintFor('warning', details);
  if (hint) process.stderr.write(`splinter: hint: ${hint}\n`);
}

/**
 * The one top-level error handler: one line `splinter: CODE: message` on stderr, then `splinter: hint:
 * ...` when hints.ts knows the way out (the stack only with --debug), a JSON `{ error: { code,
 * message, details?, hint? } }` on stdout with --json, and the code's exit status.
 */
export function reportError(error: unknown, options: OutputOptions): ExitCodeValue {
  const code = isSplinterError(error) ? error.code : 'INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  const oneLine = message.replace(/\s*\n\s*/g, ' ');
  const details = isSplinterError(error) ? error.details : undefined;
  const hint = hintFor(code, details);
  process.stderr.write(`splinter: ${code}: ${oneLine}\n`);
  if (hint) process.stderr.write(`splinter: hint: ${hint}\n`);
  if (options.debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ error: { code, message: oneLine, ...(details ? { details } : {}), ...(hint ? { hint } : {}) } })}\n`,
    );
  }
  return isSplinterError(error) ? exitCodeFor(error.code) : ExitCode.Internal;
}

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const run = promisify(execFile);
export const CLI = join(import.meta.dirname, '..', 'apps', 'cli', 'bin', 'splinter.js');
export const SAMPLE = join(import.meta.dirname, '..', 'fixtures', 'sample-patch');
export const SAMPLE_MOD = join(import.meta.dirname, '..', 'fixtures', 'sample-mod');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `splinter` as a user would, returning its exit code and output instead of throwing. */
export async function splinterCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

import { execFileSync } from 'node:child_process';

/**
 * The absolute path of a program the tests need. Missing tools fail the test run with a message that
 * says how to install them: a test never skips because a tool or service is absent.
 */
export function requireTool(name: string, debianPackage = name): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`${name} is required by the tests but not installed (apt-get install ${debianPackage})`);
  }
}

import { createInterface } from 'node:readline';
import { SplinterError } from '@splintertree/errors';

/**
 * Key passwords follow cosign: COSIGN_PASSWORD (then SPLINTER_PASSWORD) when set — even to the empty
 * string — else a prompt on a terminal, else all of standard input verbatim (no trimming).
 */
export async function readPassword(fromEnvironment: string | undefined, confirm: boolean): Promise<string> {
  if (fromEnvironment !== undefined) return fromEnvironment;
  if (process.stdin.isTTY) {
    const first = await prompt('Enter password for private key: ');
    if (confirm) {
      const second = await prompt('Enter password for private key again: ');
      if (first !== second) throw new SplinterError('INVALID_ARGUMENT', 'passwords do not match');
    }
    return first;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function prompt(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  // Hide typed characters: readline echoes through _writeToOutput, which we silence after the question.
  const muted = rl as unknown as { _writeToOutput: (text: string) => void };
  process.stderr.write(question);
  muted._writeToOutput = () => {};
  try {
    return await new Promise<string>((resolve) => rl.question('', resolve));
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}

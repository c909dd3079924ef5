import { createInterface } from 'node:readline';
import { SplinterError } from '@splintertree/errors';

/**
 * Key passwords follow cosign: COSIGN_PASSWORD (then SPLINTER_PASSWORD) when set — even to the empty
 * string — else a prompt on a terminal (printed on stderr before anything is read), else all of standard
 * input verbatim (no trimming), announced on stderr first so that a job whose stdin is open but silent
 * does not wait without a word.
 */
export async function readPassword(
  fromEnvironment: string | undefined,
  confirm: boolean,
  what = 'private key',
): Promise<string> {
  if (fromEnvironment !== undefined) return fromEnvironment;
  if (process.stdin.isTTY) {
    const first = await prompt(`Enter password for ${what}: `);
    if (confirm) {
      const second = await prompt(`Enter password for ${what} again: `);
      if (first !== second) throw new SplinterError('INVALID_ARGUMENT', 'passwords do not match');
    }
    return first;
  }
  process.stderr.write(
    `splinter: reading the password for ${what} from standard input until it closes ` +
      '(set COSIGN_PASSWORD to skip this)\n',
  );
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

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
    const first = await ask(`Enter password for ${what}: `, true);
    if (confirm) {
      const second = await ask(`Enter password for ${what} again: `, true);
      if (first !== second) throw new SplinterError('INVALID_ARGUMENT', 'passwords do not match');
    }
    return first;
  }
  process.stderr.write(
    `splinter: reading the password for ${what} from standard input until it closes ` +
      '(set COSIGN_PASSWORD to skip this)\n',
  );
  return readStdin();
}

/** All of standard input, verbatim. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Asks on the terminal (the question on stderr): a `hidden` answer is not echoed and kept verbatim,
 * another is trimmed.
 */
export async function ask(question: string, hidden: boolean): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  process.stderr.write(question);
  // Hide typed characters: readline echoes through _writeToOutput, which we silence after the question.
  if (hidden) (rl as unknown as { _writeToOutput: (text: string) => void })._writeToOutput = () => {};
  try {
    const answer = await new Promise<string>((resolve) => rl.question('', resolve));
    return hidden ? answer : answer.trim();
  } finally {
    rl.close();
    if (hidden) process.stderr.write('\n');
  }
}

import { CommanderError } from 'commander';
import { reportError } from './output.js';
import { buildProgram } from './program.js';
import { reportUsageError } from './usage.js';

const argv = process.argv.slice(2);
const outputOptions = { json: argv.includes('--json'), debug: argv.includes('--debug') };

// A reader that stops early (`splinter inspect REF | head -c 10`) closes the pipe: end quietly, as
// cat and git do, with whatever status the command had reached (0 unless it had already failed).
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  process.exitCode =
    error instanceof CommanderError
      ? reportUsageError(error, outputOptions)
      : reportError(error, outputOptions);
}

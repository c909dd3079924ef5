import { CommanderError } from 'commander';
import { ExitCode } from './exit-codes.js';
import { reportError } from './output.js';
import { buildProgram } from './program.js';

const argv = process.argv.slice(2);
const outputOptions = { json: argv.includes('--json'), debug: argv.includes('--debug') };

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Commander already printed usage or help; help and --version are not failures.
    process.exitCode = error.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
  } else {
    process.exitCode = reportError(error, outputOptions);
  }
}

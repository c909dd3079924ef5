export { ExitCode } from './exit-codes.js';
export { buildProgram } from './program.js';

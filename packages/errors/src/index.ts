export type { ErrorCode, SplinterErrorOptions } from './splinter-error.js';
export { ERROR_CODES, isSplinterError, SplinterError } from './splinter-error.js';

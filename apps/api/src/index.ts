export { AuthFailures } from './auth-failures.js';
export type { ApiConfig, ApiFlags } from './config.js';
export { apiConfig } from './config.js';
export type { Problem } from './problems.js';
export { problemFor } from './problems.js';
export { RateLimiter } from './rate-limit.js';
export type { RunningApi } from './server.js';
export { serveUntilSignalled, startApi } from './server.js';

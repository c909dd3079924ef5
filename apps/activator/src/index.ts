export type { ModSyncOptions, ModSyncResult } from './sync.js';
export { syncMods } from './sync.js';
export type { ModWatchOptions } from './watch.js';
export { watchMods } from './watch.js';

export type { ModSyncOptions, ModSyncResult } from './sync.js';
export { syncMods } from './sync.js';

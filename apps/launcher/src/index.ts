export type { SyncOptions, SyncResult } from './sync.js';
export { syncRealm } from './sync.js';

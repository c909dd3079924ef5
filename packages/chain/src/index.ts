export { MIGRATIONS, migrate } from './migrations.js';
export type { Queryable, QueryResult, SqlClient } from './sql.js';
export { databaseError, openPglite, openPostgres } from './sql.js';
export type { HeadChange, ModPin, PatchRow, PatchStatus, RegisterPatchInput, ReleaseRow } from './store.js';
export { ChainStore, HEAD_CHANGED_CHANNEL } from './store.js';

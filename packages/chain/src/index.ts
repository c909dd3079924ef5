export type { AccessChange, PreloadRow, TokenRow, UnlockState, WrappedKeyRow } from './access.js';
export { ACCESS_CHANGED_CHANNEL, AccessStore } from './access.js';
export { MIGRATIONS, migrate } from './migrations.js';
export type { Queryable, QueryResult, SqlClient } from './sql.js';
export { databaseError, openPglite, openPostgres } from './sql.js';
export type {
  ChainEntry,
  HeadChange,
  ModPin,
  PatchRow,
  PatchStatus,
  RegisterPatchInput,
  ReleaseRow,
  ShownRealm,
} from './store.js';
export { ChainStore, HEAD_CHANGED_CHANNEL, REALM_VIEW_ANCESTORS } from './store.js';

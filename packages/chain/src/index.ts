export type { AccessChange, PreloadRow, TokenRow, UnlockState, WrappedKeyRow } from './access.js';
export { ACCESS_CHANGED_CHANNEL, AccessStore } from './access.js';
export { MIGRATIONS, migrate } from './migrations.js';
export type { DatabaseTimeouts, Queryable, QueryResult, SqlClient } from './sql.js';
export {
  DEFAULT_DATABASE_TIMEOUTS,
  databaseError,
  openPglite,
  openPostgres,
  STATEMENT_TIMEOUT_GRACE_MS,
} from './sql.js';
export type {
  ChainEntry,
  HeadChange,
  ModPin,
  PatchRow,
  PatchStatus,
  RegisterPatchInput,
  ReleaseFacts,
  ReleaseRow,
  ShownRealm,
  StatementSigner,
  StoredStatement,
} from './store.js';
export { ChainStore, HEAD_CHANGED_CHANNEL, REALM_VIEW_ANCESTORS } from './store.js';

export type { AccessChange, PreloadRow, TokenRow, UnlockState, WrappedKeyRow } from './access.js';
export { ACCESS_CHANGED_CHANNEL, AccessStore } from './access.js';
export type { SchemaStatus } from './migrations.js';
export { assertSchemaCurrent, MIGRATIONS, migrate, schemaStatus } from './migrations.js';
export type { DatabaseTimeouts, PostgresOptions, Queryable, QueryResult, SqlClient } from './sql.js';
export {
  DEFAULT_APPLICATION_NAME,
  DEFAULT_DATABASE_TIMEOUTS,
  DEFAULT_POOL_SIZE,
  databaseError,
  openPglite,
  openPostgres,
  STATEMENT_TIMEOUT_GRACE_MS,
} from './sql.js';
export type {
  ChainEntry,
  HeadChange,
  ModPin,
  ModTrust,
  PatchRow,
  PatchStatus,
  RegisterPatchInput,
  ReleaseFacts,
  ReleaseRow,
  ReleaseSigned,
  ShownRealm,
  StatementSigner,
  StoredStatement,
} from './store.js';
export { ChainStore, HEAD_CHANGED_CHANNEL, REALM_VIEW_ANCESTORS, RELEASE_SIGNED_CHANNEL } from './store.js';

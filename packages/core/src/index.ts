export type {
  AccessChange,
  ChainEntry,
  HeadChange,
  ModPin,
  PatchRow,
  PatchStatus,
  ReleaseRow,
  ReleaseSigned,
  SchemaStatus,
  ShownRealm,
  StoredStatement,
  TokenRow,
  UnlockState,
} from '@splintertree/chain';
export { ACCESS_CHANGED_CHANNEL, HEAD_CHANGED_CHANNEL, RELEASE_SIGNED_CHANNEL } from '@splintertree/chain';
export type { TagRule } from '@splintertree/pack';
export type { DsseEnvelope, ReleaseStatement, Signer, TrustedKey } from '@splintertree/sign';
export { signReleaseKeyList } from '@splintertree/sign';
export { createLauncherToken, listLauncherTokens, revokeLauncherToken, rotateKekFromFile } from './admin.js';
export type { ArtifactKind } from './artifact.js';
export { ArtifactAnnotation, ArtifactType, buildArtifactManifest } from './artifact.js';
export type { DatabaseSettings, MigrationResult } from './database.js';
export { chainDatabaseStatus, migrateChainDatabase } from './database.js';
export type { CanonicalId } from './ids.js';
export { canonicalId, patchIdFrom } from './ids.js';
export type { KeyMaterial } from './key-refs.js';
export { readKeyRef, SERVICE_ACCOUNT_DIR } from './key-refs.js';
export { generateKeyPairFiles } from './keys.js';
export type { LauncherTokenRecord } from './launcher-access.js';
export { LauncherAccess, launcherConfigProblems } from './launcher-access.js';
export type { Backoff, TaggedRealmView } from './launcher-client.js';
export {
  fetchRealmView,
  requestRealmView,
  requestReleaseStatement,
  requestUnlock,
} from './launcher-client.js';
export type { RealmPatch, RealmView, UnlockGrant } from './launcher-types.js';
export type { Location } from './locations.js';
export { destinationFor, formatLocation, parseLocation, registryHostOf } from './locations.js';
export type { CreatedToken } from './preload.js';
export { generateKek, readPatchKeyFile, writeKeyFile } from './preload.js';
export type { ProgressEvent, ProgressSink } from './progress.js';
export { isFolder, readRecord, writeRecord } from './records.js';
export type { LoginInput, LoginResult } from './registry-login.js';
export { registryLogin, registryLogout } from './registry-login.js';
export type { ReleaseSigning, ReleaseTrust } from './release.js';
export {
  acceptReleaseStatement,
  DEFAULT_RELEASE_TTL_MS,
  loadReleaseTrust,
  parseDuration,
  statementSigner,
  verifyReleaseStatement,
} from './release.js';
export { RELEASE_TAG } from './release-registry.js';
export type { PruneResult, RetainedVersion } from './retention.js';
export type { Settings } from './settings.js';
export { DATABASE_TIMEOUT_VARIABLES, settingsFromEnvironment } from './settings.js';
export { loadSigningKeyRef, loadTrustedKeys } from './signing.js';
export type { OpenOptions } from './splinter.js';
export { openSplinter, Splinter } from './splinter.js';
export type { RegistryAccess } from './stores.js';
export type {
  DownloadInput,
  ExpectedManifest,
  FetchResult,
  InspectResult,
  PullInput,
  PullResult,
  PullTrust,
  PushInput,
  PushResult,
  SignatureFormat,
  SignatureRecord,
  SignResult,
  TransferStats,
  VerifiedSignature,
  VerifyResult,
} from './types.js';

export type { ConfirmedMerge } from './confirmed-merge.js';
export { confirmedMerge } from './confirmed-merge.js';
export type { BlobSource, CopyOptions, CopyStats } from './copy.js';
export {
  BlobCopier,
  copyGraph,
  DEFAULT_COPY_CONCURRENCY,
  fetchManifestBytes,
  runLimited,
} from './copy.js';
export type { Descriptor, Digest, ImageIndex, ImageManifest, Manifest } from './descriptor.js';
export { isManifestMediaType } from './descriptor.js';
export {
  assertContentMatches,
  descriptorFor,
  digestHex,
  isDigest,
  parseDigest,
  sha256Digest,
  VerifyingStream,
} from './digest.js';
export { isIndexManifest, parseManifest, successors } from './graph.js';
export { IO_BUFFER_BYTES, OciLayoutTarget } from './layout/layout-target.js';
export {
  Annotation,
  EMPTY_JSON,
  EMPTY_JSON_DIGEST,
  MANIFEST_ACCEPT,
  MAX_MANIFEST_BYTES,
  MediaType,
} from './media-types.js';
export { MemoryTarget } from './memory/memory-target.js';
export type { ReadLimitedOptions } from './read-limited.js';
export {
  MAX_ERROR_BODY_BYTES,
  MAX_TOKEN_RESPONSE_BYTES,
  readAllLimited,
  readBodyLimited,
} from './read-limited.js';
export { parseChallenge } from './registry/auth.js';
export type { StoredLogin } from './registry/auth-file.js';
export { removeLogin, storeLogin } from './registry/auth-file.js';
export { MAX_REDIRECT_RENEWALS } from './registry/blobs.js';
export type { RegistryClientOptions, RegistryStats } from './registry/client.js';
export { RegistryClient } from './registry/client.js';
export type { AuthFileOptions, Credential, CredentialSource, DockerConfig } from './registry/credentials.js';
export { authFilePath, dockerConfigCredentials, readDockerConfig } from './registry/credentials.js';
export type { RegistryTargetOptions } from './registry/registry-target.js';
export { RegistryTarget } from './registry/registry-target.js';
export type { RetryPolicy } from './registry/retry.js';
export { DEFAULT_RETRY_POLICY } from './registry/retry.js';
export type { ProxySettings, TransportOptions } from './registry/transport.js';
export {
  createRegistryDispatcher,
  NoProxyRules,
  proxySettingsFromEnvironment,
  USER_AGENT,
} from './registry/transport.js';
export type { UploadSession, UploadSessions } from './registry/uploads.js';
export type {
  AbsentPushable,
  FetchOptions,
  Mountable,
  PrivateCopyable,
  PushOptions,
  RangeRead,
  RangeReadable,
  ReadOnlyStorage,
  Storage,
  Target,
} from './target.js';
export { isMountable, isRangeReadable } from './target.js';
export type { ProgressEvent, ProgressListener, ProgressSink, TransferStats } from './transfer.js';
export {
  abortable,
  addTransferStats,
  emptyTransferStats,
  interruptedError,
  progressTo,
  throwIfAborted,
} from './transfer.js';

export { defaultChunkThreads } from './chunk-pool.js';
export type { FetchStats, RecordSourceOptions } from './fetch-records.js';
export {
  fetchRecords,
  fetchWholePack,
  MERGE_GAP_BYTES,
  mergeSpans,
  packDescriptor,
} from './fetch-records.js';
export type { FinalizeOptions } from './finalize.js';
export { finalizeTree, recoverOutput } from './finalize.js';
export type { ChunkerSettings, ChunkRef, IndexRoot, PackEntry } from './format.js';
export {
  ChunkedMediaType,
  decodeRoot,
  Encoding,
  encodeRoot,
  FORMAT_NAME,
  FormatAnnotation,
} from './format.js';
export { fileSystemError } from './fs-errors.js';
export type { IndexEntry } from './index-codec.js';
export { decodeIndex, encodeIndex } from './index-codec.js';
export type { KeyRing, ReadIndexOptions } from './index-reader.js';
export { IndexStore, openRoot, readIndex, rootAssociatedData } from './index-reader.js';
export type { InstalledTree, InstallOptions, InstallResult, Selection } from './install.js';
export { checkTree, installTree, platformName, selectEntries } from './install.js';
export type { JournalEntry, JournalHandle } from './journal.js';
export { WorkJournal } from './journal.js';
export type { KeepPolicy, Unowned } from './keep.js';
export { PLAYER_PATHS } from './keep.js';
export type { PruneStats, Span } from './pack-cache.js';
export { PackCache, unionSpans } from './pack-cache.js';
export type { ClosedPack } from './packer.js';
export { TARGET_PACK_BYTES } from './packer.js';
export { safeRelativePath } from './paths.js';
export type { PortabilityLimits, PortabilityProblem } from './portable.js';
export {
  assertPortable,
  DEFAULT_MAX_COMPONENT_BYTES,
  DEFAULT_MAX_PATH_CHARS,
  portabilityProblems,
} from './portable.js';
export type { OwnerGone } from './processes.js';
export { deadOwner, sweepOrphans } from './processes.js';
export type { BaseVersion, Published, PublishOptions, PublishStats, TagRule } from './publish.js';
export { publishTree } from './publish.js';
export { decodeRecord, encodeRecord, recordAssociatedData } from './records.js';
export type { TreeEntry } from './walk.js';
export { walkTree } from './walk.js';

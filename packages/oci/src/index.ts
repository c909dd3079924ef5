export type { Descriptor, Digest, ImageIndex, ImageManifest, Manifest } from './descriptor.js';
export { isManifestMediaType } from './descriptor.js';
export {
  descriptorFor,
  digestHex,
  isDigest,
  parseDigest,
  readAllLimited,
  sha256Digest,
  VerifyingStream,
} from './digest.js';
export {
  Annotation,
  EMPTY_JSON,
  EMPTY_JSON_DIGEST,
  MANIFEST_ACCEPT,
  MAX_MANIFEST_BYTES,
  MediaType,
} from './media-types.js';
export type { FetchOptions, Mountable, PushOptions, ReadOnlyStorage, Storage, Target } from './target.js';
export { isMountable } from './target.js';

export {
  type OpenFileOptions,
  openSealedFile,
  type SealFileOptions,
  sealFile,
} from './file.js';
export type { OpenOptions, SealOptions } from './format.js';
export {
  createOpenStream,
  createSealStream,
  generatePatchKey,
  KEY_BYTES,
  KEY_ID_ANNOTATION,
  keyIdOf,
  NONCE_BYTES,
  SEAL_OVERHEAD,
  SEALED_LAYER_MEDIA_TYPE,
  sealedSize,
  TAG_BYTES,
} from './format.js';
export {
  NATIVE_BLOCK_BYTES,
  type NativeBlockStats,
  nativeBlockStats,
  type SealBackend,
  sealBackend,
} from './gcm.js';
export { decodeKey32, kekIdOf, unwrapKey, WRAP_LABEL, WRAPPED_KEY_BYTES, wrapKey } from './wrap.js';

export {
  assertKey,
  generatePatchKey,
  KEY_BYTES,
  keyIdOf,
  NONCE_BYTES,
  open,
  SEAL_OVERHEAD,
  seal,
  sealedSize,
  TAG_BYTES,
} from './format.js';
export { decodeKey32, kekIdOf, unwrapKey, WRAP_LABEL, WRAPPED_KEY_BYTES, wrapKey } from './wrap.js';

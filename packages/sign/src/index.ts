export type { SignatureReport } from './attach.js';
export {
  attachLegacySignature,
  legacySignatureTag,
  requireTrustedSignature,
  verifyLegacySignatures,
} from './attach.js';
export type { Signer, TrustedKey } from './keys.js';
export {
  generateKeyPair,
  keyIdOf,
  loadPrivateKey,
  loadPublicKey,
  PRIVATE_KEY_LABELS,
  writeKeyPair,
} from './keys.js';
export type { LegacySignatureLayer, LegacyVerdict } from './legacy.js';
export {
  parseSimpleSigningPayload,
  SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
  simpleSigningPayload,
  verifyLegacySignature,
} from './legacy.js';

export { attachLegacySignature, attachSignatureBundle } from './attach.js';
export type { BundleVerdict } from './bundle.js';
export {
  COSIGN_SIGN_PREDICATE_TYPE,
  cosignSignStatement,
  createSignatureBundle,
  IN_TOTO_PAYLOAD_TYPE,
  SIGSTORE_BUNDLE_MEDIA_TYPE,
  verifySignatureBundle,
} from './bundle.js';
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
export type {
  DsseEnvelope,
  ReleaseHead,
  ReleaseKeyList,
  ReleaseStatement,
  SeenRelease,
  TrustedReleaseKeys,
} from './release.js';
export {
  advanceReleaseKeys,
  checkReleaseStatement,
  MAX_RELEASE_ENVELOPE_BYTES,
  openReleaseStatement,
  preAuthEncoding,
  publicKeyPems,
  RELEASE_PREDICATE_TYPE,
  signReleaseKeyList,
  signReleaseStatement,
} from './release.js';
export {
  legacySignatureTag,
  MAX_BUNDLE_BYTES,
  MAX_LEGACY_PAYLOAD_BYTES,
  MAX_SIGNATURES_CONSIDERED,
} from './signature-images.js';
export type {
  IgnoredSignature,
  RejectedSignature,
  SignatureFormat,
  SignatureReport,
  VerifiedSignature,
} from './verify.js';
export { requireTrustedSignature, verifySignatures } from './verify.js';

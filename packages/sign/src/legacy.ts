import { verify } from 'node:crypto';
import { SplinterError } from '@splintertree/errors';
import type { TrustedKey } from './keys.js';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const PAYLOAD_TYPE = 'cosign container image signature';

/**
 * The simple-signing payload exactly as cosign writes it: compact JSON, keys in cosign's order,
 * `optional` always present (null without annotations), so strict readers (containers/image) accept it.
 */
export function simpleSigningPayload(
  manifestDigest: string,
  dockerReference: string,
  optional: Record<string, string> | null = null,
): Buffer {
  const sortedOptional =
    optional === null
      ? null
      : Object.fromEntries(Object.entries(optional).sort(([a], [b]) => (a < b ? -1 : 1)));
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': dockerReference },
        image: { 'docker-manifest-digest': manifestDigest },
        type: PAYLOAD_TYPE,
      },
      optional: sortedOptional,
    }),
  );
}

/**
 * Reads a payload as strictly as containers/image does: exactly these keys at every level, the cosign
 * type string, and a digest. Returns the manifest digest it names.
 */
export function parseSimpleSigningPayload(payload: Uint8Array): string {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    throw invalid('payload is not JSON');
  }
  const object = exactKeys(value, ['critical', 'optional'], 'payload');
  const critical = exactKeys(object.critical, ['identity', 'image', 'type'], 'critical');
  if (critical.type !== PAYLOAD_TYPE) throw invalid(`payload type is ${JSON.stringify(critical.type)}`);
  const image = exactKeys(critical.image, ['docker-manifest-digest'], 'critical.image');
  exactKeys(critical.identity, ['docker-reference'], 'critical.identity');
  const digest = image['docker-manifest-digest'];
  if (typeof digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(digest))
    throw invalid('payload digest is not sha256');
  if (object.optional !== null && (typeof object.optional !== 'object' || Array.isArray(object.optional))) {
    throw invalid('payload optional must be null or an object');
  }
  return digest;
}

export interface LegacySignatureLayer {
  mediaType: string;
  payload: Uint8Array;
  annotations: Record<string, string>;
}

export type LegacyVerdict =
  | { ok: true; keyId: string }
  | { ok: false; code: 'SIGNATURE_INVALID' | 'SIGNATURE_UNTRUSTED'; reason: string };

/**
 * Checks one `.sig` layer: a simple-signing payload naming exactly `manifestDigest`, whose signature
 * (base64 DER ECDSA over SHA-256 of the payload bytes) verifies with one of `trustedKeys`.
 * Layers of other media types are not signatures: the caller ignores them (`undefined`).
 */
export function verifyLegacySignature(
  layer: LegacySignatureLayer,
  manifestDigest: string,
  trustedKeys: TrustedKey[],
): LegacyVerdict | undefined {
  if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) return undefined;
  const encoded = layer.annotations[SIGNATURE_ANNOTATION];
  if (!encoded) return { ok: false, code: 'SIGNATURE_INVALID', reason: 'no signature annotation' };
  let named: string;
  try {
    named = parseSimpleSigningPayload(layer.payload);
  } catch (error) {
    return { ok: false, code: 'SIGNATURE_INVALID', reason: (error as Error).message };
  }
  const signature = Buffer.from(encoded, 'base64');
  const signer = trustedKeys.find((key) => verify('sha256', layer.payload, key.keyObject, signature));
  if (!signer)
    return { ok: false, code: 'SIGNATURE_UNTRUSTED', reason: 'no trusted key verifies this signature' };
  if (named !== manifestDigest) {
    return { ok: false, code: 'SIGNATURE_INVALID', reason: `payload names ${named}, not ${manifestDigest}` };
  }
  return { ok: true, keyId: signer.keyId };
}

function exactKeys(value: unknown, keys: string[], where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`${where} is not an object`);
  const actual = Object.keys(value).sort();
  if (actual.join(',') !== [...keys].sort().join(',')) throw invalid(`${where} has keys ${actual.join(',')}`);
  return value as Record<string, unknown>;
}

function invalid(why: string): SplinterError {
  return new SplinterError('SIGNATURE_INVALID', why);
}

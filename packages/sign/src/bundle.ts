import { BUNDLE_V03_MEDIA_TYPE, type Bundle, bundleFromJSON, bundleToJSON } from '@sigstore/bundle';
import type { Signer as SigstoreSigner } from '@sigstore/sign';
import type { toTrustMaterial, Verifier } from '@sigstore/verify';
import { SplinterError } from '@splintertree/errors';
import { type Digest, digestHex } from '@splintertree/oci';
import type { Signer, TrustedKey } from './keys.js';

export const SIGSTORE_BUNDLE_MEDIA_TYPE = BUNDLE_V03_MEDIA_TYPE;
/** The predicate type cosign v3 gives image signatures (`cosign sign`). */
export const COSIGN_SIGN_PREDICATE_TYPE = 'https://sigstore.dev/cosign/sign/v1';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';

/** The in-toto statement cosign v3 signs for an image: one subject by sha256, no name, an empty predicate. */
export function cosignSignStatement(manifestDigest: Digest): Buffer {
  return Buffer.from(
    JSON.stringify({
      _type: IN_TOTO_STATEMENT_TYPE,
      subject: [{ digest: { sha256: digestHex(manifestDigest) } }],
      predicateType: COSIGN_SIGN_PREDICATE_TYPE,
      predicate: {},
    }),
  );
}

/**
 * A Sigstore bundle v0.3 as `cosign sign --key` writes it offline: a DSSE envelope over the statement,
 * the key named only by its hint, no transparency-log entry and no timestamp.
 */
export async function createSignatureBundle(manifestDigest: Digest, signer: Signer): Promise<Buffer> {
  const adapter: SigstoreSigner = {
    sign: async (data) => ({
      signature: Buffer.from(await signer.sign(data)),
      key: { $case: 'publicKey', publicKey: signer.publicKeyPem, hint: signer.keyId },
    }),
  };
  // Loaded on first use: @sigstore/sign brings its Fulcio/Rekor HTTP stack, which pulls and verifies
  // never need (about a tenth of a second of every CLI start).
  const { DSSEBundleBuilder } = await import('@sigstore/sign');
  const bundle = await new DSSEBundleBuilder({ signer: adapter, witnesses: [] }).create({
    data: cosignSignStatement(manifestDigest),
    type: IN_TOTO_PAYLOAD_TYPE,
  });
  return Buffer.from(JSON.stringify(bundleToJSON(bundle)));
}

export type BundleVerdict =
  | { ok: true; keyId: string }
  | { ok: false; code: 'SIGNATURE_INVALID' | 'SIGNATURE_UNTRUSTED'; reason: string }
  /** Well formed, perhaps signed by a trusted key, but a statement about something other than a release. */
  | { ok: false; code: 'NOT_A_RELEASE_SIGNATURE'; reason: string };

const EMPTY_TRUSTED_ROOT: Parameters<typeof toTrustMaterial>[0] = {
  mediaType: 'application/vnd.dev.sigstore.trustedroot.v0.2+json',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
};

/**
 * @sigstore/verify, loaded on first use (about 11 MiB of resident code and 50 ms of start-up that push,
 * serve and every other command that verifies nothing would otherwise pay).
 */
let sigstoreVerify: Promise<typeof import('@sigstore/verify')> | undefined;

/** One @sigstore/verify Verifier per trusted key: the key answers every hint, as `cosign verify --key` does. */
const verifiers = new WeakMap<TrustedKey, Verifier>();
function verifierFor(key: TrustedKey, library: typeof import('@sigstore/verify')): Verifier {
  let verifier = verifiers.get(key);
  if (!verifier) {
    const material = library.toTrustMaterial(EMPTY_TRUSTED_ROOT, () => ({
      publicKey: key.keyObject,
      validFor: () => true,
    }));
    verifier = new library.Verifier(material, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
    verifiers.set(key, verifier);
  }
  return verifier;
}

/**
 * Checks one bundle against `manifestDigest` with @sigstore/verify, given only public keys. Like
 * `cosign verify --key ... --insecure-ignore-tlog=true`: the signature must verify under a trusted key,
 * transparency-log entries and timestamps are not consulted (there is no trusted root offline).
 *
 * Only two kinds of bundle are release signatures: a message signature over the manifest itself
 * (`manifestBytes`, read only for this kind), and a DSSE envelope holding an in-toto statement of
 * cosign's image-signature predicate type (what we write) naming the manifest as its subject. Any other
 * statement a release key signs (an SBOM, a QA verdict, provenance) says something else about the
 * build and is NOT_A_RELEASE_SIGNATURE, whoever signed it.
 */
export async function verifySignatureBundle(
  json: Uint8Array,
  manifestDigest: Digest,
  trustedKeys: TrustedKey[],
  manifestBytes: () => Promise<Uint8Array>,
): Promise<BundleVerdict> {
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(JSON.parse(Buffer.from(json).toString('utf8')));
  } catch (error) {
    return {
      ok: false,
      code: 'SIGNATURE_INVALID',
      reason: `not a Sigstore bundle: ${(error as Error).message}`,
    };
  }
  if (bundle.mediaType !== BUNDLE_V03_MEDIA_TYPE) {
    return {
      ok: false,
      code: 'SIGNATURE_INVALID',
      reason: `bundle media type ${bundle.mediaType} is older than v0.3`,
    };
  }
  let artifact: Buffer | undefined;
  let subjects: string[] | undefined;
  if (bundle.content.$case === 'messageSignature') {
    const named = Buffer.from(bundle.content.messageSignature.messageDigest?.digest ?? []).toString('hex');
    if (named !== digestHex(manifestDigest)) {
      return {
        ok: false,
        code: 'SIGNATURE_INVALID',
        reason: `message signature names digest ${named || 'none'}, not ${manifestDigest}`,
      };
    }
    artifact = Buffer.from(await manifestBytes());
  } else {
    const envelope = bundle.content.dsseEnvelope;
    if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
      return {
        ok: false,
        code: 'NOT_A_RELEASE_SIGNATURE',
        reason: `a DSSE envelope of payload type ${JSON.stringify(envelope.payloadType)}, not an in-toto statement`,
      };
    }
    let statement: InTotoStatement;
    try {
      statement = parseStatement(envelope.payload);
    } catch (error) {
      return { ok: false, code: 'SIGNATURE_INVALID', reason: (error as Error).message };
    }
    if (statement.predicateType !== COSIGN_SIGN_PREDICATE_TYPE) {
      return {
        ok: false,
        code: 'NOT_A_RELEASE_SIGNATURE',
        reason: `an attestation of predicate type ${JSON.stringify(statement.predicateType)}, not a release signature (${COSIGN_SIGN_PREDICATE_TYPE})`,
      };
    }
    subjects = statement.subjects;
  }
  const keyOnly: Bundle = {
    ...bundle,
    verificationMaterial: {
      ...bundle.verificationMaterial,
      tlogEntries: [],
      timestampVerificationData: undefined,
    },
  };
  sigstoreVerify ??= import('@sigstore/verify');
  const library = await sigstoreVerify;
  const signer = trustedKeys.find((key) => {
    try {
      verifierFor(key, library).verify(library.toSignedEntity(keyOnly, artifact));
      return true;
    } catch {
      return false;
    }
  });
  if (!signer)
    return { ok: false, code: 'SIGNATURE_UNTRUSTED', reason: 'no trusted key verifies this bundle' };
  if (subjects && !subjects.includes(digestHex(manifestDigest))) {
    return {
      ok: false,
      code: 'SIGNATURE_INVALID',
      reason: `statement names ${subjects.map((h) => `sha256:${h}`).join(', ') || 'no subject'}, not ${manifestDigest}`,
    };
  }
  return { ok: true, keyId: signer.keyId };
}

interface InTotoStatement {
  predicateType: unknown;
  /** The sha256 digests the statement names as its subjects. */
  subjects: string[];
}

/** An in-toto v1 statement's predicate type and subject digests. */
function parseStatement(payload: Buffer): InTotoStatement {
  let statement: { _type?: unknown; subject?: unknown; predicateType?: unknown } | null;
  try {
    statement = JSON.parse(payload.toString('utf8')) as typeof statement;
  } catch {
    throw new SplinterError('SIGNATURE_INVALID', 'the signed statement is not JSON');
  }
  if (typeof statement !== 'object' || statement === null)
    throw new SplinterError('SIGNATURE_INVALID', 'the signed statement is not a JSON object');
  if (statement._type !== IN_TOTO_STATEMENT_TYPE) {
    throw new SplinterError('SIGNATURE_INVALID', `statement type is ${JSON.stringify(statement._type)}`);
  }
  if (!Array.isArray(statement.subject))
    throw new SplinterError('SIGNATURE_INVALID', 'statement has no subject');
  return {
    predicateType: statement.predicateType,
    subjects: statement.subject.flatMap((subject: { digest?: { sha256?: unknown } }) =>
      typeof subject?.digest?.sha256 === 'string' ? [subject.digest.sha256.toLowerCase()] : [],
    ),
  };
}

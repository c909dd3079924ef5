import { verify } from 'node:crypto';
import { SplinterError } from '@splintertree/errors';
import { type Digest, digestHex } from '@splintertree/oci';
import { IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT_TYPE } from './bundle.js';
import { loadPublicKey, type Signer, type TrustedKey } from './keys.js';

/** The predicate type of a release statement: "this is the current release of this realm". */
export const RELEASE_PREDICATE_TYPE = 'https://splinter.dev/release/v1';
/** The DSSE payload type of a signed list of trusted release keys (the previous key signs the next). */
const RELEASE_KEYS_PAYLOAD_TYPE = 'application/vnd.splintertree.release-keys.v1+json';
const RELEASE_KEYS_TYPE = 'https://splinter.dev/release-keys/v1';
/** A statement or key list larger than this is refused unread: real ones are about a kilobyte. */
export const MAX_RELEASE_ENVELOPE_BYTES = 64 * 1024;
/** How far in the future an issue time may lie before the statement is refused (clock skew). */
const RELEASE_CLOCK_SKEW_MS = 5 * 60 * 1000;

export interface ReleaseHead {
  /** The patch id in the release database. */
  id: string;
  version: string;
  /** The manifest digest a launcher must install. */
  digest: string;
  /** Where the manifest is, pinned by digest. */
  reference: string;
}

/** What a release key vouches for: the realm's head at one point of the release log, until an expiry. */
export interface ReleaseStatement {
  realm: string;
  /** Decimal, rises with every statement of the realm (activation, rollback, refresh): never reused. */
  sequence: string;
  /** The release-log entry (cluster.releases seq) whose head move the statement describes. */
  release: string;
  action: 'activate' | 'rollback' | 'refresh';
  head: ReleaseHead;
  /** The mods the head pins, by digest. */
  mods: Array<{ reference: string; digest: string }>;
  /** ISO 8601, UTC. */
  issuedAt: string;
  expiresAt: string;
}

/** A DSSE envelope (https://github.com/secure-systems-lab/dsse), as cosign attest writes one. */
export interface DsseEnvelope {
  payloadType: string;
  /** base64 */
  payload: string;
  signatures: Array<{ keyid: string; sig: string }>;
}

/** The hex of a `sha256:` digest. */

/** DSSE's pre-authentication encoding: what is actually signed. */
export function preAuthEncoding(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.byteLength} `),
    type,
    Buffer.from(` ${payload.byteLength} `),
    payload,
  ]);
}

/**
 * The statement as an in-toto v1 Statement whose subject is the head's manifest, serialised with a
 * fixed key order (the bytes signed are the bytes verified, so this only makes statements reproducible).
 */
function releaseStatementPayload(statement: ReleaseStatement): Buffer {
  return Buffer.from(
    JSON.stringify({
      _type: IN_TOTO_STATEMENT_TYPE,
      subject: [
        { name: statement.head.reference, digest: { sha256: digestHex(statement.head.digest as Digest) } },
      ],
      predicateType: RELEASE_PREDICATE_TYPE,
      predicate: {
        realm: statement.realm,
        sequence: statement.sequence,
        release: statement.release,
        action: statement.action,
        head: {
          id: statement.head.id,
          version: statement.head.version,
          digest: statement.head.digest,
          reference: statement.head.reference,
        },
        mods: statement.mods.map((mod) => ({ reference: mod.reference, digest: mod.digest })),
        issuedAt: statement.issuedAt,
        expiresAt: statement.expiresAt,
      },
    }),
  );
}

async function signEnvelope(payloadType: string, payload: Buffer, signer: Signer): Promise<DsseEnvelope> {
  const signature = await signer.sign(preAuthEncoding(payloadType, payload));
  return {
    payloadType,
    payload: payload.toString('base64'),
    signatures: [{ keyid: signer.keyId, sig: Buffer.from(signature).toString('base64') }],
  };
}

/** Signs a release statement with a release key: a DSSE envelope over the in-toto statement. */
export async function signReleaseStatement(
  statement: ReleaseStatement,
  signer: Signer,
): Promise<DsseEnvelope> {
  return signEnvelope(IN_TOTO_PAYLOAD_TYPE, releaseStatementPayload(statement), signer);
}

/** Parses an envelope's JSON without trusting any of it; RELEASE_INVALID (or `code`) when malformed. */
function parseEnvelope(
  json: Uint8Array | string,
  code: 'RELEASE_INVALID' | 'RELEASE_KEYS_INVALID' = 'RELEASE_INVALID',
): DsseEnvelope {
  const bytes = typeof json === 'string' ? Buffer.from(json, 'utf8') : Buffer.from(json);
  if (bytes.byteLength > MAX_RELEASE_ENVELOPE_BYTES) {
    throw new SplinterError(
      code,
      `a signed release document of ${bytes.byteLength} bytes is over the limit of ${MAX_RELEASE_ENVELOPE_BYTES}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new SplinterError(code, 'a signed release document is not JSON');
  }
  const envelope = value as Partial<DsseEnvelope> | null;
  if (
    typeof envelope !== 'object' ||
    envelope === null ||
    typeof envelope.payloadType !== 'string' ||
    typeof envelope.payload !== 'string' ||
    !Array.isArray(envelope.signatures) ||
    !envelope.signatures.every(
      (s) => typeof s === 'object' && s !== null && typeof s.sig === 'string' && typeof s.keyid === 'string',
    )
  ) {
    throw new SplinterError(code, 'a signed release document is not a DSSE envelope');
  }
  return envelope as DsseEnvelope;
}

/** The trusted key whose signature over the envelope verifies, if any. */
function envelopeSigner(envelope: DsseEnvelope, keys: TrustedKey[]): TrustedKey | undefined {
  const payload = Buffer.from(envelope.payload, 'base64');
  const signed = preAuthEncoding(envelope.payloadType, payload);
  for (const signature of envelope.signatures.slice(0, 16)) {
    const sig = Buffer.from(signature.sig, 'base64');
    const key = keys.find((candidate) => {
      try {
        return verify('sha256', signed, candidate.keyObject, sig);
      } catch {
        return false;
      }
    });
    if (key) return key;
  }
  return undefined;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,18})$/;

/**
 * Opens a signed release statement: the envelope must be signed by one of `keys` (RELEASE_UNTRUSTED
 * otherwise) and hold a well-formed release statement (RELEASE_INVALID). Nothing about the realm,
 * the sequence or the expiry is checked here: see checkReleaseStatement.
 */
export function openReleaseStatement(
  json: Uint8Array | string,
  keys: TrustedKey[],
): { statement: ReleaseStatement; keyId: string } {
  const envelope = parseEnvelope(json);
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new SplinterError(
      'RELEASE_INVALID',
      `a release statement must be an in-toto statement, not payload type ${JSON.stringify(envelope.payloadType).slice(0, 80)}`,
    );
  }
  const signer = envelopeSigner(envelope, keys);
  if (!signer) {
    const named = envelope.signatures.map((s) => s.keyid).filter((id) => id !== '');
    throw new SplinterError(
      'RELEASE_UNTRUSTED',
      `the release statement is signed by no trusted release key (signed by ${named.join(', ').slice(0, 200) || 'unnamed keys'}; trusted: ${keys.map((k) => k.keyId).join(', ') || 'none'})`,
    );
  }
  return { statement: parseStatementPayload(Buffer.from(envelope.payload, 'base64')), keyId: signer.keyId };
}

function parseStatementPayload(payload: Buffer): ReleaseStatement {
  const invalid = (why: string) => new SplinterError('RELEASE_INVALID', `release statement ${why}`);
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw invalid('payload is not JSON');
  }
  if (typeof value !== 'object' || value === null || value._type !== IN_TOTO_STATEMENT_TYPE)
    throw invalid('is not an in-toto v1 statement');
  if (value.predicateType !== RELEASE_PREDICATE_TYPE) {
    throw invalid(
      `has predicate type ${JSON.stringify(value.predicateType).slice(0, 80)}, not ${RELEASE_PREDICATE_TYPE}`,
    );
  }
  const p = value.predicate as Record<string, unknown> | null;
  const head = (p?.head ?? null) as Record<string, unknown> | null;
  const text = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 512;
  if (typeof p !== 'object' || p === null || typeof head !== 'object' || head === null)
    throw invalid('has no predicate');
  if (!text(p.realm)) throw invalid('names no realm');
  if (typeof p.sequence !== 'string' || !DECIMAL.test(p.sequence)) throw invalid('has no sequence number');
  if (typeof p.release !== 'string' || !DECIMAL.test(p.release)) throw invalid('names no release-log entry');
  if (p.action !== 'activate' && p.action !== 'rollback' && p.action !== 'refresh')
    throw invalid(`has action ${JSON.stringify(p.action).slice(0, 40)}`);
  if (!text(head.id) || !text(head.version) || !text(head.reference)) throw invalid('names no head patch');
  if (typeof head.digest !== 'string' || !DIGEST.test(head.digest))
    throw invalid('names no sha256 manifest digest');
  const subject = (value.subject as Array<{ digest?: { sha256?: unknown } }> | undefined)?.[0];
  if (subject?.digest?.sha256 !== digestHex(head.digest as Digest))
    throw invalid('has a subject other than its head');
  const mods = Array.isArray(p.mods) ? (p.mods as Array<Record<string, unknown>>) : undefined;
  if (!mods?.every((m) => text(m?.reference) && typeof m.digest === 'string' && DIGEST.test(m.digest)))
    throw invalid('lists its mods wrongly');
  const issued = typeof p.issuedAt === 'string' ? Date.parse(p.issuedAt) : Number.NaN;
  const expires = typeof p.expiresAt === 'string' ? Date.parse(p.expiresAt) : Number.NaN;
  if (Number.isNaN(issued) || Number.isNaN(expires) || expires <= issued)
    throw invalid('has no valid issue and expiry times');
  return {
    realm: p.realm as string,
    sequence: p.sequence,
    release: p.release,
    action: p.action,
    head: {
      id: head.id as string,
      version: head.version as string,
      digest: head.digest,
      reference: head.reference as string,
    },
    mods: mods.map((m) => ({ reference: m.reference as string, digest: m.digest as string })),
    issuedAt: p.issuedAt as string,
    expiresAt: p.expiresAt as string,
  };
}

/** The highest statement a client has accepted for a realm (persisted in its state). */
export interface SeenRelease {
  sequence: string;
  digest: string;
}

/**
 * The checks a client makes of a statement that verified: it is about `realm` (a statement of another
 * realm replayed: RELEASE_REALM_MISMATCH), it is not older than the newest one seen (RELEASE_ROLLBACK;
 * the same sequence must name the same head), and it has not expired (a frozen view: RELEASE_EXPIRED).
 */
export function checkReleaseStatement(
  statement: ReleaseStatement,
  expected: { realm: string; now: Date; seen?: SeenRelease | undefined },
): void {
  if (statement.realm !== expected.realm) {
    throw new SplinterError(
      'RELEASE_REALM_MISMATCH',
      `the release statement is about realm ${JSON.stringify(statement.realm).slice(0, 80)}, not ${expected.realm}`,
    );
  }
  const seen = expected.seen;
  if (seen) {
    const sequence = BigInt(statement.sequence);
    const highest = BigInt(seen.sequence);
    if (sequence < highest) {
      throw new SplinterError(
        'RELEASE_ROLLBACK',
        `release statement #${statement.sequence} of ${statement.realm} is older than #${seen.sequence}, already seen: refusing to go back`,
        { details: { sequence: statement.sequence, seen: seen.sequence } },
      );
    }
    if (sequence === highest && statement.head.digest !== seen.digest) {
      throw new SplinterError(
        'RELEASE_ROLLBACK',
        `release statement #${statement.sequence} of ${statement.realm} names ${statement.head.digest}, but #${seen.sequence} seen before named ${seen.digest}`,
      );
    }
  }
  const now = expected.now.getTime();
  if (Date.parse(statement.expiresAt) <= now) {
    throw new SplinterError(
      'RELEASE_EXPIRED',
      `release statement #${statement.sequence} of ${statement.realm} expired at ${statement.expiresAt}: the release may be frozen`,
      { details: { sequence: statement.sequence, expiresAt: statement.expiresAt } },
    );
  }
  if (Date.parse(statement.issuedAt) > now + RELEASE_CLOCK_SKEW_MS) {
    throw new SplinterError(
      'RELEASE_INVALID',
      `release statement #${statement.sequence} of ${statement.realm} is issued at ${statement.issuedAt}, in the future (check the clock)`,
    );
  }
}

// ---- trusted release keys, rotated by signed lists ----

/** One version of the list of release keys; version n+1 is signed by a key of version n. */
export interface ReleaseKeyList {
  version: number;
  /** PEM public keys. */
  keys: string[];
  issuedAt: string;
}

/** Signs the next list of trusted release keys with a key of the current one. */
export async function signReleaseKeyList(list: ReleaseKeyList, signer: Signer): Promise<DsseEnvelope> {
  if (!Number.isSafeInteger(list.version) || list.version < 1) {
    throw new SplinterError('INVALID_ARGUMENT', `a release key list version is a whole number >= 1`);
  }
  for (const [i, pem] of list.keys.entries()) loadPublicKey(pem, `key ${i + 1} of the list`);
  if (list.keys.length === 0)
    throw new SplinterError('INVALID_ARGUMENT', 'a release key list needs at least one key');
  const payload = Buffer.from(
    JSON.stringify({
      _type: RELEASE_KEYS_TYPE,
      version: list.version,
      keys: list.keys,
      issuedAt: list.issuedAt,
    }),
  );
  return signEnvelope(RELEASE_KEYS_PAYLOAD_TYPE, payload, signer);
}

function parseKeyList(envelope: DsseEnvelope): ReleaseKeyList {
  const invalid = (why: string) => new SplinterError('RELEASE_KEYS_INVALID', `release key list ${why}`);
  if (envelope.payloadType !== RELEASE_KEYS_PAYLOAD_TYPE)
    throw invalid(`has payload type ${JSON.stringify(envelope.payloadType).slice(0, 80)}`);
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw invalid('payload is not JSON');
  }
  if (
    value?._type !== RELEASE_KEYS_TYPE ||
    !Number.isSafeInteger(value.version) ||
    (value.version as number) < 1 ||
    !Array.isArray(value.keys) ||
    value.keys.length === 0 ||
    !value.keys.every((k) => typeof k === 'string')
  ) {
    throw invalid('is not a list of release keys');
  }
  return {
    version: value.version as number,
    keys: value.keys as string[],
    issuedAt: String(value.issuedAt ?? ''),
  };
}

/** The keys a client trusts for release statements, and the version of the list they come from (0: pinned). */
export interface TrustedReleaseKeys {
  version: number;
  keys: TrustedKey[];
}

/**
 * Walks signed key lists from what the client trusts now (its pinned keys, or the newest list it
 * accepted before, whichever is newer): each list newer than that must be the next version and be
 * signed by a key of the previous one. Lists already applied are skipped; anything else is
 * RELEASE_KEYS_INVALID. A client that accepted version n never again trusts the keys of version n-1.
 */
export function advanceReleaseKeys(
  current: TrustedReleaseKeys,
  lists: Array<Uint8Array | string | DsseEnvelope>,
): TrustedReleaseKeys {
  let trusted = current;
  const parsed = lists
    .map((list) =>
      typeof list === 'object' && !(list instanceof Uint8Array)
        ? list
        : parseEnvelope(list, 'RELEASE_KEYS_INVALID'),
    )
    .map((envelope) => ({ envelope, list: parseKeyList(envelope) }))
    .sort((a, b) => a.list.version - b.list.version);
  for (const { envelope, list } of parsed) {
    if (list.version <= trusted.version) continue;
    if (list.version !== trusted.version + 1) {
      throw new SplinterError(
        'RELEASE_KEYS_INVALID',
        `release key list version ${list.version} follows version ${trusted.version}: version ${trusted.version + 1} is missing`,
      );
    }
    if (!envelopeSigner(envelope, trusted.keys)) {
      throw new SplinterError(
        'RELEASE_KEYS_INVALID',
        `release key list version ${list.version} is not signed by a key of version ${trusted.version}`,
      );
    }
    trusted = {
      version: list.version,
      keys: list.keys.map((pem, i) => loadPublicKey(pem, `release key list v${list.version} #${i + 1}`)),
    };
  }
  return trusted;
}

/** PEM public keys of trusted keys, for storing a client's trusted list. */
export function publicKeyPems(keys: TrustedKey[]): string[] {
  return keys.map((key) => key.keyObject.export({ type: 'spki', format: 'pem' }).toString());
}

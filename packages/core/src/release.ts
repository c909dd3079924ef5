import type { StatementSigner } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import {
  advanceReleaseKeys,
  checkReleaseStatement,
  loadPublicKey,
  openReleaseStatement,
  publicKeyPems,
  type ReleaseStatement,
  type SeenRelease,
  type Signer,
  signReleaseStatement,
  type TrustedKey,
  type TrustedReleaseKeys,
} from '@splintertree/sign';
import { readKeyFile } from './key-refs.js';
import { readRecord, writeRecord } from './records.js';

/** How long a release statement stays valid unless the operator says otherwise: re-sign before then. */
export const DEFAULT_RELEASE_TTL_MS = 7 * 24 * 3600 * 1000;

/** A release key and how long the statements it signs are valid. */
export interface ReleaseSigning {
  signer: Signer;
  ttlMs: number;
  /** The clock (tests move it); default the system's. */
  now?: () => Date;
}

/** What a launcher or activator trusts for release statements. */
export interface ReleaseTrust {
  /** The release keys the client was installed with (version 0 of the trusted list). */
  keys: TrustedKey[];
  /** Signed key lists (DSSE JSON), each signed by a key of the version before it. */
  keyLists: string[];
  /** The clock; default the system's. */
  now?: () => Date;
}

/** `30m`, `36h`, `7d`, `3600s`: a duration in milliseconds (at most ten years). */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d{1,9})([smhd])$/.exec(text.trim());
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const ms = match ? Number(match[1]) * unit[match[2] as keyof typeof unit] : Number.NaN;
  if (!(ms > 0) || ms > 10 * 365 * 86_400_000) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `${flag} ${JSON.stringify(text)} is not a duration such as 30m, 36h or 7d`,
    );
  }
  return ms;
}

/** Turns the database's facts into a signed statement valid for `ttlMs` from now. */
export function statementSigner(signing: ReleaseSigning): StatementSigner {
  return async (facts) => {
    const issued = (signing.now ?? (() => new Date()))();
    const statement: ReleaseStatement = {
      ...facts,
      issuedAt: issued.toISOString(),
      expiresAt: new Date(issued.getTime() + signing.ttlMs).toISOString(),
    };
    const envelope = await signReleaseStatement(statement, signing.signer);
    return {
      envelope: JSON.stringify(envelope),
      keyId: signing.signer.keyId,
      issuedAt: statement.issuedAt,
      expiresAt: statement.expiresAt,
    };
  };
}

/** Release keys from `.pub` files, and signed key lists from files. */
export async function loadReleaseTrust(input: {
  keyFiles: string[];
  keyListFiles: string[];
}): Promise<ReleaseTrust | undefined> {
  if (input.keyFiles.length === 0) {
    if (input.keyListFiles.length > 0) {
      throw new SplinterError(
        'INVALID_ARGUMENT',
        'signed release key lists need a pinned release key: the lists are checked from it',
        { details: { reason: 'key-lists-without-key' } },
      );
    }
    return undefined;
  }
  const keys = await Promise.all(
    input.keyFiles.map(async (file) => loadPublicKey(await readKeyFile(file), file)),
  );
  const keyLists: string[] = [];
  for (const file of input.keyListFiles) {
    const text = (await readKeyFile(file)).trim();
    // A file holds one signed list, or a JSON array of them (the whole rotation history).
    if (text.startsWith('[')) {
      let lists: unknown;
      try {
        lists = JSON.parse(text);
      } catch {
        throw new SplinterError('RELEASE_KEYS_INVALID', `${file} is not JSON`);
      }
      for (const list of lists as unknown[]) keyLists.push(JSON.stringify(list));
    } else keyLists.push(text);
  }
  return { keys, keyLists };
}

/** What a client remembers of a realm's releases: the newest statement it accepted, and its keys. */
interface ReleaseRecord extends SeenRelease {
  /** The newest signed key list accepted (absent while the pinned keys are in force). */
  keys?: { version: number; pems: string[] };
}

/**
 * Accepts a release statement for `realm` or refuses it with one code: RELEASE_UNTRUSTED (no trusted
 * release key signed it), RELEASE_INVALID, RELEASE_REALM_MISMATCH, RELEASE_ROLLBACK (older than the
 * newest one this client accepted, remembered in `stateFile`), RELEASE_EXPIRED. The accepted sequence
 * is recorded before anything is installed, so a later, older statement is refused even if the
 * install fails.
 */
export async function acceptReleaseStatement(input: {
  envelope: string;
  realm: string;
  trust: ReleaseTrust;
  stateFile: string;
}): Promise<ReleaseStatement> {
  const record = await readRecord<ReleaseRecord>(input.stateFile);
  const remembered: TrustedReleaseKeys | undefined =
    record?.keys && record.keys.version > 0
      ? {
          version: record.keys.version,
          keys: record.keys.pems.map((pem, i) => loadPublicKey(pem, `remembered release key ${i + 1}`)),
        }
      : undefined;
  const trusted = advanceReleaseKeys(
    remembered ?? { version: 0, keys: input.trust.keys },
    input.trust.keyLists,
  );
  const { statement } = openReleaseStatement(input.envelope, trusted.keys);
  checkReleaseStatement(statement, {
    realm: input.realm,
    now: (input.trust.now ?? (() => new Date()))(),
    seen: record && typeof record.sequence === 'string' ? record : undefined,
  });
  await writeRecord(input.stateFile, {
    sequence: statement.sequence,
    digest: statement.head.digest,
    ...(trusted.version > 0 ? { keys: { version: trusted.version, pems: publicKeyPems(trusted.keys) } } : {}),
  } satisfies ReleaseRecord);
  return statement;
}

/**
 * `splinter release verify`: the statement must be signed by a trusted release key (after walking the
 * key lists), be about `realm` when one is named, and not have expired. Nothing is remembered.
 */
export function verifyReleaseStatement(input: {
  envelope: string;
  trust: ReleaseTrust;
  realm?: string | undefined;
}): { statement: ReleaseStatement; keyId: string; keysVersion: number } {
  const trusted = advanceReleaseKeys({ version: 0, keys: input.trust.keys }, input.trust.keyLists);
  const opened = openReleaseStatement(input.envelope, trusted.keys);
  checkReleaseStatement(opened.statement, {
    realm: input.realm ?? opened.statement.realm,
    now: (input.trust.now ?? (() => new Date()))(),
  });
  return { ...opened, keysVersion: trusted.version };
}

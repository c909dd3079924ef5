import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { AccessStore, TokenRow } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import { decodeKey32, generatePatchKey, kekIdOf, keyIdOf, unwrapKey, wrapKey } from '@splintertree/seal';
import { validateName } from './names.js';
import { KEK_NOTATION, type Settings } from './settings.js';

/** The KEK from SPLINTER_KEK or SPLINTER_KEK_FILE; KEK_MISSING when neither is set. */
export async function resolveKek(
  settings: Pick<Settings, 'kek' | 'kekFile'>,
  purpose: string,
): Promise<Uint8Array> {
  if (settings.kek) return settings.kek;
  if (settings.kekFile !== undefined) return readKekFile(settings.kekFile, 'SPLINTER_KEK_FILE');
  throw new SplinterError(
    'KEK_MISSING',
    `${purpose} needs the key-encryption key: set SPLINTER_KEK or SPLINTER_KEK_FILE`,
    { details: { reason: 'kek-missing' } },
  );
}

export async function readKekFile(path: string, what: string): Promise<Uint8Array> {
  return readKeyText(path, what, 'KEK_INVALID');
}

/** A patch key file as `splinter patch unlock --output` writes it (base64; hex is accepted too). */
export async function readPatchKeyFile(path: string): Promise<Uint8Array> {
  return readKeyText(path, 'the patch key file', 'INVALID_ARGUMENT');
}

async function readKeyText(
  path: string,
  what: string,
  code: 'KEK_INVALID' | 'INVALID_ARGUMENT',
): Promise<Uint8Array> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new SplinterError(code, `${what} ${path} cannot be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const key = decodeKey32(text);
  if (!key) throw new SplinterError(code, `${what} ${path} ${KEK_NOTATION}`);
  return key;
}

/** Writes a key as one base64 line, readable by its owner only; never overwrites. */
export async function writeKeyFile(path: string, key: Uint8Array): Promise<void> {
  try {
    await writeFile(path, `${Buffer.from(key).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SplinterError('OUTPUT_EXISTS', `${path} exists; refusing to overwrite a key file`);
    }
    throw new SplinterError('INVALID_ARGUMENT', `cannot write ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Refuses a KEK other than the current one of the release database and the one every stored key is
 * wrapped with (before anything is changed).
 */
export async function assertKekMatches(access: AccessStore, kek: Uint8Array): Promise<void> {
  const mine = kekIdOf(kek);
  const current = await access.currentKekId();
  const stored = await access.kekIds();
  const others = [...new Set([...(current === undefined ? [] : [current]), ...stored])].filter(
    (id) => id !== mine,
  );
  if (others.length > 0) {
    throw new SplinterError(
      'KEK_MISMATCH',
      `the configured KEK (${mine}) is not the one the release database's patch keys are wrapped with (${others.join(', ')})`,
      { details: { kekId: mine, storedKekIds: others } },
    );
  }
}

/** A fresh patch key, its public id and its wrapped form for `cluster.patch_keys`. */
function newPatchKey(kek: Uint8Array) {
  const key = generatePatchKey();
  const keyId = keyIdOf(key);
  return { key, keyId, stored: { keyId, wrappedKey: wrapKey(kek, key, keyId), kekId: kekIdOf(kek) } };
}

export type PreloadKey = ReturnType<typeof newPatchKey>;

/** `push --preload`: the KEK is checked before anything is packed or uploaded. */
export async function preparePreload(settings: Settings, access: AccessStore): Promise<PreloadKey> {
  const kek = await resolveKek(settings, 'a preload push');
  await assertKekMatches(access, kek);
  return newPatchKey(kek);
}

/**
 * Re-wraps every live key from `current` to `next` and makes `next` the current KEK, in one transaction
 * that a concurrent `push --preload` cannot slip a key past; a key `current` cannot open aborts all.
 */
export async function rotateKek(
  access: AccessStore,
  current: Uint8Array,
  next: Uint8Array,
): Promise<{ keys: number; from: string; to: string }> {
  const from = kekIdOf(current);
  const to = kekIdOf(next);
  const keys = await access.rotateKek({
    from,
    to,
    rewrap: (row) => {
      if (row.kekId !== from && row.kekId !== to) {
        throw new SplinterError(
          'KEK_MISMATCH',
          `the key of patch ${row.patchId} is wrapped with ${row.kekId}, not with the current KEK ${from}`,
        );
      }
      const key = unwrapKey(row.kekId === to ? next : current, row.wrappedKey, row.keyId);
      return { wrappedKey: wrapKey(next, key, row.keyId), kekId: to };
    },
  });
  return { keys, from, to };
}

export function generateKek(): string {
  return randomBytes(32).toString('base64');
}

// ---- launcher tokens: `spl_<id>_<43 base64url characters>`, stored as SHA-256 of the secret part ----

const TOKEN_PATTERN = /^spl_(\d{1,18})_([A-Za-z0-9_-]{43})$/;

export interface CreatedToken extends TokenRow {
  token: string;
}

export async function createToken(
  access: AccessStore,
  input: { realm: string; label?: string | undefined },
): Promise<CreatedToken> {
  const realm = validateName('realm', input.realm);
  const secret = randomBytes(32).toString('base64url');
  const row = await access.createToken({ realm, tokenHash: hashSecret(secret), label: input.label });
  return { ...row, token: `spl_${row.id}_${secret}` };
}

function hashSecret(secret: string): Uint8Array {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Splits a presented token; undefined when it is not shaped like one of ours. */
export function parseToken(token: string): { id: string; secret: string } | undefined {
  const match = TOKEN_PATTERN.exec(token);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(secret: string, storedHash: Uint8Array): boolean {
  const presented = hashSecret(secret);
  return presented.byteLength === storedHash.byteLength && timingSafeEqual(presented, storedHash);
}

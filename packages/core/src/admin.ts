import type { TokenRow } from '@splintertree/chain';
import { SplinterError } from '@splintertree/errors';
import { type CreatedToken, createToken, readKekFile, resolveKek, rotateKek } from './preload.js';
import type { Settings } from './settings.js';
import type { Splinter } from './splinter.js';

/** Operator commands around preload keys and launcher tokens, over an open Splinter. */

export async function createLauncherToken(
  splinter: Splinter,
  input: { realm: string; label?: string | undefined },
): Promise<CreatedToken> {
  return createToken(await splinter.access(), input);
}

export async function listLauncherTokens(splinter: Splinter, realm?: string): Promise<TokenRow[]> {
  return (await splinter.access()).listTokens(realm);
}

export async function revokeLauncherToken(splinter: Splinter, id: string): Promise<TokenRow> {
  return (await splinter.access()).revokeToken(id);
}

/** `splinter kek rotate`: every live key re-wrapped from the configured KEK to the one in `newKekFile`. */
export async function rotateKekFromFile(
  splinter: Splinter,
  settings: Settings,
  newKekFile: string,
): Promise<{ keys: number; from: string; to: string }> {
  const current = await resolveKek(settings, 'rotating the KEK');
  const next = await readKekFile(newKekFile, 'the new KEK file');
  if (Buffer.from(current).equals(Buffer.from(next))) {
    throw new SplinterError('INVALID_ARGUMENT', `${newKekFile} holds the current KEK: nothing to rotate`, {
      details: { reason: 'same-kek' },
    });
  }
  return rotateKek(await splinter.access(), current, next);
}

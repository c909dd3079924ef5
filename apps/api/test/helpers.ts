import { setTimeout as sleep } from 'node:timers/promises';
import type { ChainStore } from '@splintertree/chain';
import { generatePatchKey, kekIdOf, keyIdOf, wrapKey } from '@splintertree/seal';

/** A preloaded patch registered directly (the registry plays no part in the API tests). */
export async function registerPreloaded(
  chain: ChainStore,
  kek: Uint8Array,
  patch: { realm: string; version: string; parent?: string | undefined },
): Promise<{ id: string; key: string }> {
  const key = generatePatchKey();
  const keyId = keyIdOf(key);
  const row = await chain.registerPatch({
    ...patch,
    reference: `example.test/patches/${patch.realm}@sha256:${'b'.repeat(64)}`,
    digest: `sha256:${'b'.repeat(64)}`,
    status: 'preload',
    key: { keyId, wrappedKey: wrapKey(kek, key, keyId), kekId: kekIdOf(kek) },
  });
  return { id: row.id, key: Buffer.from(key).toString('base64') };
}

/** Polls `probe` until it answers `wanted` or `ms` pass, for outcomes that have no event to wait on. */
export async function eventually<T>(probe: () => Promise<T>, wanted: T, ms = 2000): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await probe();
  while (value !== wanted && Date.now() < deadline) {
    await sleep(20);
    value = await probe();
  }
  return value;
}

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChainStore, openPostgres, type SqlClient } from '@splintertree/chain';
import {
  createLauncherToken,
  openSplinter,
  type Settings,
  type Splinter,
  settingsFromEnvironment,
} from '@splintertree/core';
import { generatePatchKey, kekIdOf, keyIdOf, wrapKey } from '@splintertree/seal';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';

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

/** What an API test stands on: a fresh migrated database, the core over it, a realm token, the chain. */
export interface Backend {
  database: FreshDatabase;
  settings: Settings;
  splinter: Splinter;
  /** A launcher token of realm eu-1. */
  token: string;
  client: SqlClient;
  chain: ChainStore;
  close(): Promise<void>;
}

export async function openBackend(label: string, kek: Uint8Array, home?: string): Promise<Backend> {
  const database = await freshDatabase(label, { migrate: true });
  const settings = settingsFromEnvironment({
    DATABASE_URL: database.url,
    SPLINTER_KEK: Buffer.from(kek).toString('hex'),
    SPLINTER_HOME: home ?? `/tmp/splinter-${label}-${randomBytes(4).toString('hex')}`,
  });
  const splinter = await openSplinter({ settings });
  const token = (await createLauncherToken(splinter, { realm: 'eu-1' })).token;
  const client = await openPostgres(database.url);
  return {
    database,
    settings,
    splinter,
    token,
    client,
    chain: new ChainStore(client),
    async close() {
      await splinter.close();
      await client.close();
      await database.drop();
    },
  };
}

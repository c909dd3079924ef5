import { AccessStore } from '@splintertree/chain';
import { errorCodeOf } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, lockHolder, openBackend, patchInput, waitForLockWaiters } from './backends.js';

const wrapped = new Uint8Array(60).fill(9);

/**
 * Races between operator commands, made deterministic: a third connection holds a row lock that
 * parks one transaction at a chosen statement while the other is started, and pg_stat_activity
 * tells when both are waiting.
 */
describe('revocation racing activation on the real PostgreSQL', () => {
  let backend: Backend;
  let holder: Awaited<ReturnType<typeof lockHolder>>;
  beforeAll(async () => {
    backend = await openBackend('postgres', 'races');
    holder = await lockHolder(backend.url!);
  });
  afterAll(async () => {
    await holder?.close();
    await backend?.close();
  });

  async function realmWithCandidate(realm: string) {
    const { chain } = backend;
    const head = await chain.registerPatch(patchInput(realm, '1'));
    await chain.activate({ patchId: head.id, actor: 't' });
    const candidate = await chain.registerPatch({
      ...patchInput(realm, '2'),
      status: 'preload',
      key: { keyId: 'sha256:k', wrappedKey: wrapped, kekId: 'sha256:kek' },
    });
    return { head, candidate };
  }

  it('refuses to activate a patch whose revocation committed while the activation waited for the realm', async () => {
    const { chain } = backend;
    const realm = 'revoke-first';
    const { head, candidate } = await realmWithCandidate(realm);
    // The revocation locks the realm, then stops at its UPDATE of the patch row held here.
    await holder.lock('SELECT 1 FROM cluster.patches WHERE id = $1 FOR UPDATE', [candidate.id]);
    const revoked = chain.revokePatch(candidate.id);
    await waitForLockWaiters(backend.url!, 1);
    // The activation starts while the revocation is uncommitted, and waits for the realm.
    const activated = chain.activate({ patchId: candidate.id, actor: 't' });
    await waitForLockWaiters(backend.url!, 2);
    await holder.release();
    expect((await revoked).status).toBe('revoked');
    expect(await errorCodeOf(activated)).toBe('INVALID_TRANSITION');
    const shown = await chain.showRealm(realm);
    expect(shown.head?.id).toBe(head.id);
    expect((await chain.getPatch(candidate.id)).status).toBe('revoked');
    expect((await chain.history(realm)).map((r) => r.toHead)).toEqual([head.id]);
    expect((await new AccessStore(backend.client).unlockState(candidate.id))?.live).toBe(false);
  });

  it('refuses to revoke a patch whose activation committed while the revocation waited for the realm', async () => {
    const { chain } = backend;
    const realm = 'activate-first';
    const { candidate } = await realmWithCandidate(realm);
    // The activation locks the realm, then stops at its UPDATE of the candidate's row held here.
    await holder.lock('SELECT 1 FROM cluster.patches WHERE id = $1 FOR UPDATE', [candidate.id]);
    const activated = chain.activate({ patchId: candidate.id, actor: 't' });
    await waitForLockWaiters(backend.url!, 1);
    const revoked = chain.revokePatch(candidate.id);
    await waitForLockWaiters(backend.url!, 2);
    await holder.release();
    expect((await activated).toHead).toBe(candidate.id);
    expect(await errorCodeOf(revoked)).toBe('INVALID_TRANSITION');
    expect((await chain.showRealm(realm)).head).toMatchObject({ id: candidate.id, status: 'active' });
    const state = await new AccessStore(backend.client).unlockState(candidate.id);
    expect(state).toMatchObject({ live: true, key: { wrappedKey: wrapped } });
  });
});

describe('KEK rotation racing push --preload on the real PostgreSQL', () => {
  let backend: Backend;
  let access: AccessStore;
  let holder: Awaited<ReturnType<typeof lockHolder>>;
  let kek = 0;
  beforeAll(async () => {
    backend = await openBackend('postgres', 'kek_races');
    access = new AccessStore(backend.client);
    holder = await lockHolder(backend.url!);
    await preloaded('setup', '1', 'sha256:kek0');
  });
  afterAll(async () => {
    await holder?.close();
    await backend?.close();
  });

  function preloaded(realm: string, version: string, kekId: string) {
    return backend.chain.registerPatch({
      ...patchInput(realm, version),
      status: 'preload',
      key: { keyId: `sha256:${realm}-${version}`, wrappedKey: wrapped, kekId },
    });
  }

  /** A rotation from the current test KEK to the next one. */
  function rotate() {
    const from = `sha256:kek${kek}`;
    const to = `sha256:kek${++kek}`;
    const rotation = access.rotateKek({
      from,
      to,
      rewrap: (row) => ({ wrappedKey: row.wrappedKey, kekId: to }),
    });
    return { from, to, rotation };
  }

  /** Waits for `count` lock waiters, or for `work` to finish first (the race the test rules out). */
  async function parked(count: number, work: Promise<unknown>): Promise<void> {
    await Promise.race([waitForLockWaiters(backend.url!, count), work.catch(() => undefined)]);
  }

  it('refuses a key wrapped by the KEK that a rotation retired before the key was inserted', async () => {
    const before = `sha256:kek${kek}`;
    const { to, rotation } = rotate();
    await rotation;
    expect(await errorCodeOf(preloaded('late', '1', before))).toBe('KEK_MISMATCH');
    expect(await access.kekIds()).toEqual([to]);
    expect(await access.currentKekId()).toBe(to);
    expect(await backend.chain.findVersion('late', '1')).toBeUndefined();
  });

  it('makes a key inserted during a rotation wait for it, then refuses it', async () => {
    const [existing] = await access.preloads('setup');
    // The rotation holds the current KEK, then stops at its read of the keys (one row held here).
    await holder.lock('SELECT 1 FROM cluster.patch_keys WHERE patch_id = $1 FOR UPDATE', [existing!.id]);
    const { from, to, rotation } = rotate();
    await waitForLockWaiters(backend.url!, 1);
    const insert = preloaded('during', '1', from);
    await parked(2, insert);
    await holder.release();
    expect(await rotation).toBe(1);
    expect(await errorCodeOf(insert)).toBe('KEK_MISMATCH');
    expect(await access.kekIds()).toEqual([to]);
  });

  it('makes a rotation started during a key insertion wait for it, then re-wrap that key too', async () => {
    await preloaded('before', '1', `sha256:kek${kek}`);
    // The insertion holds the current KEK, then stops at the lock of its realm, held here.
    await holder.lock('SELECT 1 FROM cluster.realms WHERE realm = $1 FOR UPDATE', ['before']);
    const insert = preloaded('before', '2', `sha256:kek${kek}`);
    await waitForLockWaiters(backend.url!, 1);
    const { to, rotation } = rotate();
    await parked(2, rotation);
    await holder.release();
    const inserted = await insert;
    expect(await rotation).toBe(3);
    expect(await access.kekIds()).toEqual([to]);
    expect((await access.unlockState(inserted.id))?.key?.kekId).toBe(to);
  });
});

import { AccessStore } from '@splinter/chain';
import { errorCodeOf } from '@splinter/testkit';
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

import { ACCESS_CHANGED_CHANNEL, type AccessChange, AccessStore } from '@splintertree/chain';
import { errorCodeOf } from '@splintertree/testkit';
import { afterAll, assert, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, type BackendName, dumpTables, openBackend, patchInput } from './backends.js';

const wrapped = (byte: number) => new Uint8Array(60).fill(byte);

for (const backendName of ['postgres', 'pglite'] as BackendName[]) {
  describe(`preload keys and launcher tokens on ${backendName}`, () => {
    let backend: Backend;
    let access: AccessStore;
    beforeAll(async () => {
      backend = await openBackend(backendName, 'access');
      access = new AccessStore(backend.client);
    });
    afterAll(async () => {
      await backend?.close();
    });

    it('tells whether a preloaded patch is live: locked in preload, live once in the head chain, locked after a rollback past it', async () => {
      const { chain } = backend;
      const root = await chain.registerPatch(patchInput('live', '1'));
      expect((await access.unlockState(root.id))?.live).toBe(false);
      await chain.activate({ patchId: root.id, actor: 't' });
      const pre = await chain.registerPatch({
        ...patchInput('live', '2'),
        status: 'preload',
        key: { keyId: 'sha256:k2', wrappedKey: wrapped(2), kekId: 'sha256:kek' },
      });
      expect(await access.unlockState(pre.id)).toEqual({
        patchId: pre.id,
        realm: 'live',
        status: 'preload',
        live: false,
        key: { keyId: 'sha256:k2', kekId: 'sha256:kek', wrappedKey: wrapped(2) },
      });
      expect(await access.preloads('live')).toMatchObject([
        { id: pre.id, version: '2', parent: root.id, keyId: 'sha256:k2' },
      ]);
      await chain.activate({ patchId: pre.id, actor: 't' });
      expect(await access.unlockState(pre.id)).toMatchObject({ live: true, status: 'active' });
      const next = await chain.registerPatch(patchInput('live', '3'));
      await chain.activate({ patchId: next.id, actor: 't' });
      expect(await access.unlockState(pre.id)).toMatchObject({ live: true, status: 'superseded' });
      await chain.rollback({ realm: 'live', to: root.id, actor: 't' });
      expect(await access.unlockState(pre.id)).toMatchObject({ live: false });
      expect(await access.preloads('live')).toEqual([]);
      expect(await access.unlockState('999999')).toBeUndefined();
      expect(await access.unlockState('not-a-number')).toBeUndefined();
    });

    it('destroys the key of a revoked patch and announces it', async () => {
      const { chain } = backend;
      const seen: AccessChange[] = [];
      const stop = await access.listenAccessChanges((change) => seen.push(change));
      const pre = await chain.registerPatch({
        ...patchInput('gone', '1'),
        status: 'preload',
        key: { keyId: 'sha256:g', wrappedKey: wrapped(7), kekId: 'sha256:kek' },
      });
      await chain.revokePatch(pre.id);
      expect(await access.unlockState(pre.id)).toMatchObject({
        status: 'revoked',
        key: { keyId: 'sha256:g', wrappedKey: null },
      });
      const { rows } = await backend.client.query<{ destroyed: boolean }>(
        'SELECT destroyed_at IS NOT NULL AS destroyed FROM cluster.patch_keys WHERE patch_id = $1',
        [pre.id],
      );
      expect(rows[0]?.destroyed).toBe(true);
      const deadline = Date.now() + 5000;
      while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await stop();
      expect(seen).toEqual([{ kind: 'patch', id: pre.id, realm: 'gone' }]);
      expect(ACCESS_CHANGED_CHANNEL).toBe('splinter_access_changed');
    });

    it('re-wraps every live key in one transaction and makes the new KEK current, or changes nothing when one fails', async () => {
      const { chain, client } = backend;
      for (const version of ['a', 'b']) {
        await chain.registerPatch({
          ...patchInput('rewrap', version),
          status: 'preload',
          key: { keyId: `sha256:${version}`, wrappedKey: wrapped(1), kekId: 'sha256:kek' },
        });
      }
      expect(await access.currentKekId()).toBe('sha256:kek');
      const before = await dumpTables(client);
      let calls = 0;
      const failing = access.rotateKek({
        from: 'sha256:kek',
        to: 'sha256:new',
        rewrap: () => {
          calls += 1;
          if (calls === 2) throw new Error('second key refused');
          return { wrappedKey: wrapped(9), kekId: 'sha256:new' };
        },
      });
      await expect(failing).rejects.toThrow('second key refused');
      expect(await dumpTables(client)).toBe(before);
      expect(await access.currentKekId()).toBe('sha256:kek');
      expect(
        await errorCodeOf(
          access.rotateKek({ from: 'sha256:other', to: 'sha256:new', rewrap: () => assert.fail() }),
        ),
      ).toBe('KEK_MISMATCH');
      const count = await access.rotateKek({
        from: 'sha256:kek',
        to: 'sha256:new',
        rewrap: (row) => ({ wrappedKey: wrapped(row.wrappedKey[0]! + 1), kekId: 'sha256:new' }),
      });
      expect(count).toBeGreaterThanOrEqual(3);
      expect(await access.kekIds()).toEqual(['sha256:new']);
      expect(await access.currentKekId()).toBe('sha256:new');
      const stale = chain.registerPatch({
        ...patchInput('rewrap', 'c'),
        status: 'preload',
        key: { keyId: 'sha256:c', wrappedKey: wrapped(1), kekId: 'sha256:kek' },
      });
      expect(await errorCodeOf(stale)).toBe('KEK_MISMATCH');
    });

    it('stores tokens by hash, finds active ones by id, revokes them and announces it', async () => {
      const token = await access.createToken({
        realm: 'eu-1',
        tokenHash: wrapped(3).subarray(0, 32),
        label: 'ci',
      });
      expect(token).toMatchObject({ realm: 'eu-1', label: 'ci', revokedAt: null });
      expect(await access.activeToken(token.id)).toEqual({
        id: token.id,
        realm: 'eu-1',
        tokenHash: wrapped(3).subarray(0, 32),
      });
      expect((await access.listTokens('eu-1')).map((t) => t.id)).toEqual([token.id]);
      expect((await access.revokeToken(token.id)).revokedAt).not.toBeNull();
      expect(await access.activeToken(token.id)).toBeUndefined();
      expect(await access.activeToken('x')).toBeUndefined();
      expect(await errorCodeOf(access.revokeToken('424242'))).toBe('NOT_FOUND');
    });
  });
}

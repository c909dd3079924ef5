import type { ReleaseFacts, StatementSigner } from '@splintertree/chain';
import { errorCodeOf } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, type BackendName, dumpTables, openBackend, patchInput } from './backends.js';

/** Records what it is asked to sign; the chain stores whatever envelope it returns. */
function recordingSigner(): { sign: StatementSigner; facts: ReleaseFacts[] } {
  const facts: ReleaseFacts[] = [];
  return {
    facts,
    sign: async (input) => {
      facts.push(input);
      return {
        envelope: JSON.stringify(input),
        keyId: 'test-key',
        issuedAt: '2026-01-01T00:00:00.000Z',
        expiresAt: '2026-01-08T00:00:00.000Z',
      };
    },
  };
}

for (const backendName of ['postgres', 'pglite'] as BackendName[]) {
  describe(`release statements on ${backendName}`, () => {
    let backend: Backend;
    beforeAll(async () => {
      backend = await openBackend(backendName, 'statements');
    });
    afterAll(async () => {
      await backend?.close();
    });

    it('signs activation, rollback and refresh in their transactions, numbering each higher', async () => {
      const { chain } = backend;
      const signer = recordingSigner();
      const a = await chain.registerPatch({ ...patchInput('st', 'a'), mods: [] });
      expect(await chain.latestStatement('st')).toBeUndefined();
      const first = await chain.activate({ patchId: a.id, actor: 't', statement: signer.sign });
      const b = await chain.registerPatch(patchInput('st', 'b'));
      const second = await chain.activate({ patchId: b.id, actor: 't', statement: signer.sign });
      const back = await chain.rollback({ realm: 'st', actor: 't', statement: signer.sign });
      const refreshed = await chain.refreshStatement({ realm: 'st', statement: signer.sign });
      expect(signer.facts.map((f) => [f.action, f.head.id, f.release])).toEqual([
        ['activate', a.id, first.seq],
        ['activate', b.id, second.seq],
        ['rollback', a.id, back.seq],
        ['refresh', a.id, back.seq],
      ]);
      const sequences = signer.facts.map((f) => BigInt(f.sequence));
      expect([...sequences].sort((x, y) => (x < y ? -1 : 1))).toEqual(sequences);
      expect(new Set(sequences).size).toBe(4);
      expect(signer.facts[0]!.head).toEqual({
        id: a.id,
        version: 'a',
        digest: a.digest,
        reference: a.reference,
      });
      expect(back.statement?.sequence).toBe(signer.facts[2]!.sequence);
      const latest = await chain.latestStatement('st');
      expect(latest).toEqual(refreshed);
      expect(latest).toMatchObject({
        realm: 'st',
        head: a.id,
        release: back.seq,
        keyId: 'test-key',
        issuedAt: '2026-01-01T00:00:00.000Z',
        expiresAt: '2026-01-08T00:00:00.000Z',
      });
      expect(JSON.parse(latest!.envelope)).toEqual(signer.facts[3]);
      // Newest by number, not by text: the tenth statement comes after the ninth.
      for (let i = 0; i < 8; i++) await chain.refreshStatement({ realm: 'st', statement: signer.sign });
      expect((await chain.latestStatement('st'))?.sequence).toBe(signer.facts.at(-1)!.sequence);
    });

    it('refresh signs the latest release and history keeps log order past the ninth release', async () => {
      const { chain } = backend;
      const signer = recordingSigner();
      const a = await chain.registerPatch(patchInput('many', 'a'));
      await chain.activate({ patchId: a.id, actor: 't' });
      const b = await chain.registerPatch(patchInput('many', 'b'));
      let last = '';
      for (let i = 0; i < 6; i++) {
        await chain.activate({ patchId: b.id, actor: 't' });
        last = (await chain.rollback({ realm: 'many', actor: 't' })).seq;
      }
      expect(BigInt(last)).toBeGreaterThanOrEqual(10n);
      await chain.refreshStatement({ realm: 'many', statement: signer.sign });
      expect(signer.facts[0]!.release).toBe(last);
      const seqs = (await chain.history('many')).map((r) => BigInt(r.seq));
      expect(seqs).toEqual([...seqs].sort((x, y) => (x < y ? -1 : 1)));
      expect(seqs.length).toBe(13);
    });

    it('a signer that fails leaves the head where it was: no head move without its statement', async () => {
      const { chain, client } = backend;
      const a = await chain.registerPatch(patchInput('fails', 'a'));
      await chain.activate({ patchId: a.id, actor: 't' });
      const b = await chain.registerPatch(patchInput('fails', 'b'));
      const before = await dumpTables(client);
      const failing: StatementSigner = async () => {
        throw new Error('the HSM is unplugged');
      };
      await expect(chain.activate({ patchId: b.id, actor: 't', statement: failing })).rejects.toThrow(/HSM/);
      expect(await dumpTables(client)).toBe(before);
      expect(await errorCodeOf(chain.refreshStatement({ realm: 'nobody', statement: failing }))).toBe(
        'REALM_UNKNOWN',
      );
      await chain.registerPatch(patchInput('headless', 'a'));
      expect(
        await errorCodeOf(chain.refreshStatement({ realm: 'headless', statement: recordingSigner().sign })),
      ).toBe('INVALID_TRANSITION');
    });

    it('refuses to rewrite a statement or to store one that does not describe the head', async () => {
      const { chain, client } = backend;
      const a = await chain.registerPatch(patchInput('locked', 'a'));
      await chain.activate({ patchId: a.id, actor: 't' });
      const b = await chain.registerPatch(patchInput('locked', 'b'));
      const release = await chain.activate({ patchId: b.id, actor: 't', statement: recordingSigner().sign });
      for (const sql of [
        `UPDATE cluster.release_statements SET envelope = '{}' WHERE realm = 'locked'`,
        `DELETE FROM cluster.release_statements WHERE realm = 'locked'`,
        'TRUNCATE cluster.release_statements',
      ]) {
        await expect(client.query(sql)).rejects.toThrow(/append-only/);
      }
      // A statement naming an old patch as the head (a forged rollback) is refused by the database.
      await expect(
        client.query(
          `INSERT INTO cluster.release_statements (realm, release_seq, head, key_id, envelope, issued_at, expires_at)
           VALUES ('locked', $1, $2, 'k', '{}', now(), now() + interval '1 day')`,
          [release.seq, a.id],
        ),
      ).rejects.toThrow(/does not describe its head/);
      expect((await chain.latestStatement('locked'))?.head).toBe(b.id);
    });
  });
}

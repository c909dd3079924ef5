import { errorCodeOf } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, type BackendName, openBackend, patchInput } from './backends.js';

for (const backendName of ['postgres', 'pglite'] as BackendName[]) {
  describe(`the release log on ${backendName} is append-only`, () => {
    let backend: Backend;
    let ids: { a: string; b: string; c: string };
    beforeAll(async () => {
      backend = await openBackend(backendName, 'release_log');
      const { chain } = backend;
      const a = await chain.registerPatch(patchInput('log', 'a'));
      await chain.activate({ patchId: a.id, actor: 't' });
      const b = await chain.registerPatch(patchInput('log', 'b'));
      await chain.activate({ patchId: b.id, actor: 't' });
      const c = await chain.registerPatch(patchInput('log', 'c'));
      ids = { a: a.id, b: b.id, c: c.id };
    });
    afterAll(async () => {
      await backend?.close();
    });

    /** The statement's error message, after checking it is a DATABASE_ERROR. */
    async function refusal(sql: string, params?: unknown[]): Promise<string> {
      const attempt = backend.client.query(sql, params);
      expect(await errorCodeOf(attempt)).toBe('DATABASE_ERROR');
      return attempt.then(
        () => '',
        (error: Error) => error.message,
      );
    }

    const insert = (columns: string, values: string, params: unknown[]) =>
      refusal(`INSERT INTO cluster.releases (${columns}) VALUES (${values})`, params);

    it('refuses TRUNCATE, UPDATE and DELETE', async () => {
      const before = await backend.chain.history('log');
      expect(await refusal('TRUNCATE cluster.releases')).toContain('cluster.releases is append-only');
      expect(await refusal('TRUNCATE cluster.realms, cluster.patches, cluster.releases CASCADE')).toContain(
        'append-only',
      );
      expect(await refusal("UPDATE cluster.releases SET actor = 'mallory'")).toContain('append-only');
      expect(await refusal('DELETE FROM cluster.releases')).toContain('append-only');
      expect(await backend.chain.history('log')).toEqual(before);
    });

    it('refuses a row with a seq of its own choosing, whatever it records', async () => {
      const before = await backend.chain.history('log');
      const last = BigInt(before.at(-1)!.seq);
      for (const seq of [last + 1n, last + 1000n, 1n]) {
        const message = await insert(
          'seq, realm, action, from_head, to_head, actor',
          `$1, 'log', 'activate', $2, $3, 'mallory'`,
          [seq.toString(), ids.b, ids.c],
        );
        expect(message).toMatch(/append-only: seq \d+ was not assigned by the database|releases_pkey/);
      }
      expect(await backend.chain.history('log')).toEqual(before);
    });

    it('refuses a row that records a head move that did not happen', async () => {
      const before = await backend.chain.history('log');
      const forge = (from: string | null, to: string) =>
        insert('realm, action, from_head, to_head, actor', `'log', 'activate', $1, $2, 'mallory'`, [
          from,
          to,
        ]);
      // c never became the head; b -> b moves nothing; a -> b happened, but is not the latest move
      for (const [from, to] of [
        [ids.b, ids.c],
        [ids.b, ids.b],
        [ids.a, ids.b],
        [null, ids.b],
      ] as const) {
        expect(await forge(from, to)).toContain('is not the head move of realm log');
      }
      expect(await backend.chain.history('log')).toEqual(before);
    });

    it('still records every real activation and rollback, in order', async () => {
      const { chain } = backend;
      await chain.activate({ patchId: ids.c, actor: 't' });
      await chain.rollback({ realm: 'log', actor: 't' });
      await chain.rollback({ realm: 'log', to: ids.a, actor: 't' });
      const other = await chain.registerPatch(patchInput('log-2', '1'));
      await chain.activate({ patchId: other.id, actor: 't' });
      const history = await chain.history('log');
      expect(history.map((r) => [r.action, r.fromHead, r.toHead])).toEqual([
        ['activate', null, ids.a],
        ['activate', ids.a, ids.b],
        ['activate', ids.b, ids.c],
        ['rollback', ids.c, ids.b],
        ['rollback', ids.b, ids.a],
      ]);
    });
  });
}

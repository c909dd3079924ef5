import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type ChainStore, MIGRATIONS, migrate, openPostgres } from '@splintertree/chain';
import { freshDatabase } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, openBackend, patchInput } from './backends.js';

const run = promisify(execFile);
const TSX = join(import.meta.dirname, '..', '..', '..', 'node_modules', '.bin', 'tsx');
const RACE = join(import.meta.dirname, 'fixtures', 'race.ts');

describe('concurrency on the real PostgreSQL', () => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await openBackend('postgres', 'race');
  });
  afterAll(async () => {
    await backend?.close();
  });

  it('migrates once when several processes start at the same moment', async () => {
    const database = await freshDatabase('migrate');
    const clients = await Promise.all(
      Array.from({ length: 4 }, () => openPostgres(database.url, { max: 1 })),
    );
    try {
      const results = await Promise.all(clients.map((client) => migrate(client)));
      expect(results.filter((r) => r.applied.length > 0)).toEqual([
        { applied: MIGRATIONS.map((m) => m.version) },
      ]);
    } finally {
      await Promise.all(clients.map((client) => client.close()));
      await database.drop();
    }
  });

  async function prepareRound(chain: ChainStore, realm: string, round: number, contenders: number) {
    const head = (await chain.showRealm(realm).catch(() => undefined))?.head?.id ?? null;
    const candidates = [];
    for (let i = 0; i < contenders; i++)
      candidates.push(await chain.registerPatch(patchInput(realm, `r${round}-c${i}`, head ?? undefined)));
    if (head === null) {
      // first round: the realm needs a head so that every contender saw the same one
      const root = candidates.shift()!;
      await chain.activate({ patchId: root.id, actor: 'setup' });
      return prepareRound(chain, realm, round + 1000, contenders);
    }
    return { head, candidates };
  }

  it('lets exactly one of many connections win each round, never losing an update', async () => {
    const { chain } = backend;
    const realm = 'race-connections';
    for (let round = 0; round < 25; round++) {
      const { head, candidates } = await prepareRound(chain, realm, round, 8);
      const releasesBefore = (await chain.history(realm)).length;
      const results = await Promise.all(
        candidates.map((candidate) =>
          chain.activate({ patchId: candidate.id, expectedHead: head, actor: `c${candidate.id}` }).then(
            () => 'ok',
            (e: { code: string }) => e.code,
          ),
        ),
      );
      expect(results.filter((r) => r === 'ok')).toHaveLength(1);
      expect(results.filter((r) => r !== 'ok').every((r) => r === 'HEAD_CONFLICT')).toBe(true);
      const winner = candidates[results.indexOf('ok')]!;
      const shown = await chain.showRealm(realm);
      expect(shown.head?.id).toBe(winner.id);
      expect(shown.chain.at(-2)?.id).toBe(head);
      expect((await chain.history(realm)).length).toBe(releasesBefore + 1);
    }
  }, 120_000);

  it('lets exactly one of several OS processes win each round', async () => {
    const { chain, url } = backend;
    const realm = 'race-processes';
    for (let round = 0; round < 4; round++) {
      const { head, candidates } = await prepareRound(chain, realm, round, 4);
      const startAt = Date.now() + 2500;
      const outputs = await Promise.all(
        candidates.map((candidate) =>
          run(TSX, ['--conditions=source', RACE, url!, candidate.id, head, String(startAt)]),
        ),
      );
      const results = outputs.map((o) => JSON.parse(o.stdout) as { patchId: string; result: string });
      expect(results.filter((r) => r.result === 'ok')).toHaveLength(1);
      expect(results.filter((r) => r.result !== 'ok').map((r) => r.result)).toEqual([
        'HEAD_CONFLICT',
        'HEAD_CONFLICT',
        'HEAD_CONFLICT',
      ]);
      expect((await chain.showRealm(realm)).head?.id).toBe(results.find((r) => r.result === 'ok')!.patchId);
    }
  }, 120_000);
});

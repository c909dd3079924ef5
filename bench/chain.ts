import { ChainStore, migrate, openPostgres, type SqlClient } from '@splintertree/chain';
import { type FreshDatabase, freshDatabase } from '@splintertree/testkit';
import { table } from './support.js';

const SECONDS_PER_RUN = Number(process.env.BENCH_SECONDS ?? 3);

/**
 * `npm run bench -- chain`: activations and rollbacks per second with 1, 8 and 32 concurrent clients
 * (each alternating activate/rollback on its own realm: the contention is the database, not a shared
 * row), and rollback latency at chain lengths 10, 1,000 and 100,000. Uses DATABASE_URL, else a fresh
 * database on 127.0.0.1:5432.
 */
export default async function (): Promise<void> {
  const database: FreshDatabase | undefined = process.env.DATABASE_URL
    ? undefined
    : await freshDatabase('bench_chain');
  const url = process.env.DATABASE_URL ?? database!.url;
  const client = await openPostgres(url, { max: 40 });
  try {
    await migrate(client);
    const chain = new ChainStore(client);
    const rows: Array<Record<string, string>> = [];
    for (const clients of [1, 8, 32]) rows.push(await throughput(chain, clients));
    table(rows);
    console.log('');
    const curve: Array<Record<string, string>> = [];
    for (const length of [10, 1_000, 100_000]) curve.push(await rollbackAtDepth(client, chain, length));
    table(curve);
    console.log(
      '\n(chains of 1,000 and 100,000 are synthesized: the head and its parent carry full chains of',
    );
    console.log(
      ' that length, the deeper ancestors exist only as ids in those arrays; rollback and activation',
    );
    console.log(' run the real code path, which never reads the chain beyond one subscript)');
  } finally {
    await client.close();
    await database?.drop();
  }
}

async function throughput(chain: ChainStore, clients: number): Promise<Record<string, string>> {
  const realms = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const realm = `tp-${clients}-${i}`;
      const base = { reference: 'bench', digest: `sha256:${'0'.repeat(64)}`, status: 'draft' as const };
      const a = await chain.registerPatch({ ...base, realm, version: 'a' });
      await chain.activate({ patchId: a.id, actor: 'bench' });
      const b = await chain.registerPatch({ ...base, realm, version: 'b' });
      return { realm, a: a.id, b: b.id };
    }),
  );
  const latencies: number[] = [];
  const deadline = performance.now() + SECONDS_PER_RUN * 1000;
  await Promise.all(
    realms.map(async ({ realm, a, b }) => {
      while (performance.now() < deadline) {
        let started = performance.now();
        await chain.activate({ patchId: b, expectedHead: a, actor: 'bench' });
        latencies.push(performance.now() - started);
        started = performance.now();
        await chain.rollback({ realm, expectedHead: b, actor: 'bench' });
        latencies.push(performance.now() - started);
      }
    }),
  );
  return {
    clients: String(clients),
    'operations/s': (latencies.length / SECONDS_PER_RUN).toFixed(0),
    'p50 ms': percentile(latencies, 50).toFixed(2),
    'p99 ms': percentile(latencies, 99).toFixed(2),
  };
}

async function rollbackAtDepth(
  client: SqlClient,
  chain: ChainStore,
  length: number,
): Promise<Record<string, string>> {
  const realm = `depth-${length}`;
  await client.query('INSERT INTO cluster.realms (realm) VALUES ($1)', [realm]);
  const { rows } = await client.query<{ id: string }>(
    `SELECT nextval(pg_get_serial_sequence('cluster.patches', 'id'))::text AS id FROM generate_series(1, $1)`,
    [length],
  );
  const ids = rows.map((r) => r.id);
  const insert = (index: number, parent: string | null) =>
    client.query(
      `INSERT INTO cluster.patches (id, realm, version, parent, chain, depth, reference, digest, status)
       VALUES ($1, $2, $3, $4, $5::bigint[], $6, 'bench', $7, 'draft')`,
      [
        ids[index],
        realm,
        `v${index}`,
        parent,
        `{${ids.slice(0, index + 1).join(',')}}`,
        index,
        `sha256:${'0'.repeat(64)}`,
      ],
    );
  await insert(length - 2, null);
  await insert(length - 1, ids[length - 2]!);
  const parent = ids[length - 2]!;
  const head = ids[length - 1]!;
  await chain.activate({ patchId: parent, actor: 'bench' });
  await chain.activate({ patchId: head, actor: 'bench' });
  const latencies: number[] = [];
  for (let i = 0; i < 300; i++) {
    const started = performance.now();
    await chain.rollback({ realm, actor: 'bench' });
    latencies.push(performance.now() - started);
    await chain.activate({ patchId: head, actor: 'bench' });
  }
  return {
    'chain length': length.toLocaleString('en'),
    'rollback p50 ms': percentile(latencies, 50).toFixed(2),
    'rollback p99 ms': percentile(latencies, 99).toFixed(2),
  };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

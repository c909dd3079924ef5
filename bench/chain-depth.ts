import { LauncherService, type Principal } from '@splintertree/api';
import { ChainStore, migrate, openPostgres, type SqlClient } from '@splintertree/chain';
import { patchIdFrom, settingsFromEnvironment } from '@splintertree/core';
import { generatePatchKey } from '@splintertree/seal';
import { freshDatabase } from '@splintertree/testkit';
import { table } from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2000);
const DEPTHS = [2, 10_000];
/** The realm view at depth 10,000 may cost at most this much more than at depth 2. */
const TARGET_RATIO = 1.2;

/**
 * `npm run bench -- chain-depth`: the realm view (ChainStore.showRealm, and the launcher API's view
 * that wraps it, in process) of a head at depth 2 and at depth 10,000, on PostgreSQL (DATABASE_URL,
 * else a fresh database on 127.0.0.1:5432). Every patch of both chains is a real row carrying its full
 * chain (the deep realm is about 400 MB). The view at depth 2 lists the whole chain (3 patches), the one
 * at depth 10,000 the head and REALM_VIEW_ANCESTORS ancestors. The two realms are read alternately, so
 * drift in the machine's load falls on both; p50 and p99 over BENCH_ROUNDS reads of each (default
 * 2,000, after a tenth as many to warm up), and the ratio of the p50s.
 */
export default async function (): Promise<void> {
  const database = process.env.DATABASE_URL ? undefined : await freshDatabase('bench_chain_depth');
  const url = process.env.DATABASE_URL ?? database!.url;
  const client = await openPostgres(url);
  let launcher: LauncherService | undefined;
  try {
    await migrate(client);
    const chain = new ChainStore(client);
    const realms: string[] = [];
    for (const depth of DEPTHS) {
      const started = performance.now();
      realms.push(await buildRealm(client, chain, depth));
      console.log(`built a chain of depth ${depth.toLocaleString('en')} in ${seconds(started)}`);
    }
    launcher = await LauncherService.open({
      settings: settingsFromEnvironment({
        DATABASE_URL: url,
        SPLINTER_KEK: Buffer.from(generatePatchKey()).toString('base64'),
      }),
    });
    const service = launcher;
    const views = {
      'ChainStore.showRealm': (realm: string) => chain.showRealm(realm),
      'launcher API realm view': (realm: string) => service.realm(realm, principal(realm)),
    };
    const rows: Array<Record<string, string>> = [];
    const ratios: string[] = [];
    for (const [name, view] of Object.entries(views)) {
      const measured = await alternate(realms, view);
      for (const [i, m] of measured.entries()) {
        rows.push({
          view: name,
          depth: DEPTHS[i]!.toLocaleString('en'),
          'p50 ms': m.p50.toFixed(3),
          'p99 ms': m.p99.toFixed(3),
          'view bytes': m.bytes.toLocaleString('en'),
        });
      }
      const ratio = measured[1]!.p50 / measured[0]!.p50;
      ratios.push(
        `${name}: depth ${DEPTHS[1]!.toLocaleString('en')} / depth ${DEPTHS[0]} = ${ratio.toFixed(2)} ` +
          `(${ratio <= TARGET_RATIO ? 'within' : 'OUTSIDE'} the target of ${TARGET_RATIO.toFixed(2)})`,
      );
    }
    table(rows);
    console.log('');
    for (const line of ratios) console.log(line);
  } finally {
    await launcher?.close();
    await client.close();
    await database?.drop();
  }
}

/**
 * A realm whose head sits at `depth`: depth + 1 patches in one INSERT, each carrying its full chain as
 * registerPatch would have stored it, then the head activated through the real code path.
 */
async function buildRealm(client: SqlClient, chain: ChainStore, depth: number): Promise<string> {
  const realm = `depth-${depth}`;
  await client.query('INSERT INTO cluster.realms (realm) VALUES ($1)', [realm]);
  const { rows } = await client.query<{ id: string }>(
    `SELECT nextval(pg_get_serial_sequence('cluster.patches', 'id'))::text AS id FROM generate_series(0, $1)`,
    [depth],
  );
  const ids = `{${rows.map((row) => row.id).join(',')}}`;
  await client.query(
    `INSERT INTO cluster.patches (id, realm, version, parent, chain, depth, reference, digest, status)
     SELECT ids[d + 1], $1, 'v' || d, ids[d], ids[1 : d + 1], d, $3, $4, 'draft'
       FROM (SELECT $2::bigint[] AS ids) AS given, generate_series(0, cardinality(ids) - 1) AS d`,
    [realm, ids, `bench/patches/${realm}@sha256:${'d'.repeat(64)}`, `sha256:${'d'.repeat(64)}`],
  );
  await chain.activate({ patchId: rows.at(-1)!.id, actor: 'bench' });
  return realm;
}

function principal(realm: string): Principal {
  return { tokenId: patchIdFrom('1'), realm };
}

async function alternate(
  realms: string[],
  view: (realm: string) => Promise<unknown>,
): Promise<Array<{ p50: number; p99: number; bytes: number }>> {
  const latencies = realms.map(() => [] as number[]);
  const bytes = await Promise.all(realms.map(async (realm) => JSON.stringify(await view(realm)).length));
  // The first tenth warms up the JIT, the pool and PostgreSQL's caches, and is not counted.
  const warmUp = Math.ceil(ROUNDS / 10);
  for (let round = -warmUp; round < ROUNDS; round++) {
    for (const [i, realm] of realms.entries()) {
      const started = performance.now();
      await view(realm);
      if (round >= 0) latencies[i]!.push(performance.now() - started);
    }
  }
  return latencies.map((values, i) => ({
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    bytes: bytes[i]!,
  }));
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

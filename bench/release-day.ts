import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChainStore, openPostgres, type SqlClient } from '@splintertree/chain';
import { createLauncherToken, openSplinter, settingsFromEnvironment } from '@splintertree/core';
import { generatePatchKey, kekIdOf, keyIdOf, wrapKey } from '@splintertree/seal';
import { freePort, freshDatabase } from '@splintertree/testkit';
import { CLI, markdownTable, table, writeBenchSection } from './support.js';

const LAUNCHERS = Number(process.env.BENCH_LAUNCHERS ?? 3000);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 2000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 4000);
const UNLOCK_DEADLINE_MS = Number(process.env.BENCH_DEADLINE_MS ?? 30_000);
const REPLICAS = (process.env.BENCH_REPLICAS ?? '1,2,3').split(',').map(Number);
/** Keep-alive connections each replica is reached through (launchers share them, as behind an ingress). */
const SOCKETS_PER_REPLICA = Number(process.env.BENCH_SOCKETS ?? 64);
/** Several replicas share their limits through this Redis, as deployed (BENCH_REDIS=none: each in memory). */
const REDIS = process.env.BENCH_REDIS ?? 'redis://127.0.0.1:6379';

interface Replica {
  child: ChildProcess;
  port: number;
  agent: http.Agent;
}

interface Answer {
  status: number;
  body: string;
  etag: string | undefined;
}

interface Round {
  replicas: number;
  launchers: number;
  unlocked: number;
  errors: number;
  p50: number;
  p99: number;
  max: number;
  unlockRequestP99: number;
  pollsPerSecond: number;
  pollQueries: number;
  queriesPerUnlock: number;
  xactPerUnlock: number;
  notModified: number;
}

/**
 * `npm run bench -- release-day`: the release moment. N launchers (BENCH_LAUNCHERS, default 3000) poll
 * the realm view every BENCH_POLL_MS (default 2 s, phases spread) with If-None-Match, through R
 * `splinter serve` replicas (1, 2, 3) over one PostgreSQL, launchers spread round-robin. After a
 * warm-up the patch in preload is activated; every launcher that sees the new head asks for its key
 * (POST unlock) and would then start its staged install (from the cache it filled during preload:
 * local work, not the API's, so not simulated). Reported per replica count: unlock latency from the
 * activation (p50, p99, max), errors, steady polls/s, and database statements per unlock, from the
 * replicas' own counters (splinter_api_database_queries_total) and from pg_stat_database xact_commit.
 * Written to docs/benchmarks.md under `## release-day`.
 */
export default async function (): Promise<void> {
  const database = process.env.DATABASE_URL ? undefined : await freshDatabase('bench_release_day');
  const url = process.env.DATABASE_URL ?? database!.url;
  const home = await mkdtemp(join(tmpdir(), 'splinter-bench-release-'));
  const kek = generatePatchKey();
  const env = { DATABASE_URL: url, SPLINTER_KEK: Buffer.from(kek).toString('base64'), SPLINTER_HOME: home };
  const client = await openPostgres(url);
  const splinter = await openSplinter({ settings: settingsFromEnvironment(env) });
  const rounds: Round[] = [];
  const started = Date.now();
  const loadBefore = await loadAverage();
  try {
    const token = (await createLauncherToken(splinter, { realm: 'bench' })).token;
    const chain = new ChainStore(client);
    const preloaded = async (version: string, parent?: string) => {
      const key = generatePatchKey();
      const keyId = keyIdOf(key);
      return chain.registerPatch({
        realm: 'bench',
        version,
        parent,
        reference: `bench/patches/bench@sha256:${'d'.repeat(64)}`,
        digest: `sha256:${'d'.repeat(64)}`,
        status: 'preload',
        key: { keyId, wrappedKey: wrapKey(kek, key, keyId), kekId: kekIdOf(kek) },
      });
    };
    let head = await preloaded('0');
    await chain.activate({ patchId: head.id, actor: 'bench' });
    for (const count of REPLICAS) {
      const next = await preloaded(`r${count}`, head.id);
      rounds.push(
        await round(
          count,
          env,
          token,
          client,
          url,
          () => chain.activate({ patchId: next.id, actor: 'bench' }),
          next.id,
        ),
      );
      head = next;
    }
  } finally {
    await splinter.close();
    await client.close();
    await database?.drop();
    await rm(home, { recursive: true, force: true });
  }
  const rows = rounds.map((r) => ({
    replicas: String(r.replicas),
    launchers: String(r.launchers),
    unlocked: `${r.unlocked}/${r.launchers}`,
    errors: String(r.errors),
    'unlock p50 ms': r.p50.toFixed(0),
    'unlock p99 ms': r.p99.toFixed(0),
    'unlock max ms': r.max.toFixed(0),
    'unlock request p99 ms': r.unlockRequestP99.toFixed(1),
    'polls/s (steady)': r.pollsPerSecond.toFixed(0),
    '304 share (steady)': `${(r.notModified * 100).toFixed(1)}%`,
    'statements per 1,000 polls': r.pollQueries.toFixed(1),
    'statements per unlock': r.queriesPerUnlock.toFixed(3),
    'xact_commit per unlock': r.xactPerUnlock.toFixed(3),
  }));
  table(rows);
  const facts = `${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(2)} GiB memory, Node ${process.version}; ${LAUNCHERS} launchers polling every ${POLL_MS} ms (phases spread, If-None-Match), ${SOCKETS_PER_REPLICA} keep-alive sockets per replica, ${REDIS === 'none' ? "limits in each replica's memory" : 'two or more replicas sharing their limits through Redis'}, ${WARMUP_MS} ms warm-up, replicas and launchers on the same machine and loopback, one PostgreSQL; ${((Date.now() - started) / 60_000).toFixed(1)} minutes; load average ${loadBefore} before, ${await loadAverage()} after (other work shares the machine: above 2, the figures are pessimistic).`;
  const notes = [
    'Unlock latency runs from the moment the activation is sent to the moment the launcher holds the key: it is dominated by the poll interval (a launcher notices the new head at its next poll, on average half an interval later). "unlock request" is the POST alone.',
    'Statements are what the replicas sent to PostgreSQL (their own splinter_api_database_queries_total, LISTEN heartbeats aside) from the activation until every launcher held its key, polls in that window included, divided by the launchers; xact_commit is the database-wide count over the same window (heartbeats, the activation and the statistics flush lag included).',
    'Every replica keeps one read of the realm view for --view-max-age (2 s) and drops it on the head change NOTIFY; unlock keys are cached after the first release. So a replica costs the database a few statements per realm per head change and per 2 s, whatever the number of players.',
  ];
  await writeBenchSection(
    'release-day',
    'bench/release-day.ts',
    `${facts}\n\n${markdownTable(rows)}\n${notes.join('\n\n')}\n`,
  );
}

async function round(
  count: number,
  env: Record<string, string>,
  token: string,
  client: SqlClient,
  databaseUrl: string,
  activate: () => Promise<unknown>,
  newHead: string,
): Promise<Round> {
  const replicas: Replica[] = [];
  try {
    const shared =
      count > 1 && REDIS !== 'none'
        ? ['--redis-url', REDIS, '--redis-prefix', `splinter-bench:${process.pid}:${count}:`]
        : [];
    for (let i = 0; i < count; i++) replicas.push(await startReplica(env, shared));
    const launchers = Array.from({ length: LAUNCHERS }, (_, i) => ({
      replica: replicas[i % replicas.length]!,
      etag: undefined as string | undefined,
      unlockedAt: undefined as number | undefined,
      unlocking: false,
      polling: false,
      unlockMs: 0,
    }));
    let errors = 0;
    let polls = 0;
    let notModified = 0;
    let running = true;
    let activatedAt = Number.POSITIVE_INFINITY;
    let allUnlocked: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      allUnlocked = resolve;
    });
    let unlocked = 0;
    const headers = { authorization: `Bearer ${token}` };

    const unlock = async (launcher: (typeof launchers)[number]) => {
      if (launcher.unlocking || launcher.unlockedAt !== undefined) return;
      launcher.unlocking = true;
      const sent = performance.now();
      const answer = await request(
        launcher.replica,
        'POST',
        `/launcher/patches/${newHead}/unlock`,
        headers,
      ).catch(() => undefined);
      launcher.unlocking = false;
      if (answer?.status === 200 && answer.body.includes('"key"')) {
        launcher.unlockedAt = performance.now();
        launcher.unlockMs = launcher.unlockedAt - sent;
        unlocked += 1;
        if (unlocked === launchers.length) allUnlocked();
      } else {
        errors += 1;
      }
    };
    const poll = async (launcher: (typeof launchers)[number]) => {
      // A launcher asks again only once its last answer is in, as a real one would.
      if (!running || launcher.unlockedAt !== undefined || launcher.unlocking || launcher.polling) return;
      launcher.polling = true;
      const answer = await request(launcher.replica, 'GET', '/launcher/realms/bench', {
        ...headers,
        ...(launcher.etag ? { 'if-none-match': launcher.etag } : {}),
      }).catch(() => undefined);
      launcher.polling = false;
      polls += 1;
      if (answer?.status === 304) {
        notModified += 1;
        return;
      }
      if (answer?.status !== 200) {
        errors += 1;
        return;
      }
      launcher.etag = answer.etag;
      const view = JSON.parse(answer.body) as { head: { id: string } | null };
      if (view.head?.id === newHead && performance.now() >= activatedAt) await unlock(launcher);
    };
    const timers = launchers.map((launcher) => {
      const phase = Math.random() * POLL_MS;
      let interval: NodeJS.Timeout | undefined;
      const first = setTimeout(() => {
        void poll(launcher);
        interval = setInterval(() => void poll(launcher), POLL_MS);
      }, phase);
      return () => {
        clearTimeout(first);
        clearInterval(interval);
      };
    });

    // Steady state: polls answered per second and statements per poll, before the release.
    await sleep(WARMUP_MS / 2);
    const steadyQueries = await replicaQueries(replicas);
    const steadyPolls = polls;
    const steadyNotModified = notModified;
    const steadyFrom = performance.now();
    await sleep(WARMUP_MS / 2);
    const pollsPerSecond = ((polls - steadyPolls) * 1000) / (performance.now() - steadyFrom);
    const steadyShare = (notModified - steadyNotModified) / Math.max(1, polls - steadyPolls);
    const pollQueries =
      (((await replicaQueries(replicas)) - steadyQueries) * 1000) / Math.max(1, polls - steadyPolls);

    const queriesBefore = await replicaQueries(replicas);
    const xactBefore = await xactCommits(client, databaseUrl);
    activatedAt = performance.now();
    await activate();
    const deadline = sleep(UNLOCK_DEADLINE_MS).then(() => 'deadline');
    await Promise.race([done, deadline]);
    running = false;
    for (const stop of timers) stop();
    const queries = (await replicaQueries(replicas)) - queriesBefore;
    const xact = (await xactCommits(client, databaseUrl)) - xactBefore;

    const latencies = launchers
      .filter((l) => l.unlockedAt !== undefined)
      .map((l) => l.unlockedAt! - activatedAt)
      .sort((a, b) => a - b);
    const requests = launchers
      .filter((l) => l.unlockedAt !== undefined)
      .map((l) => l.unlockMs)
      .sort((a, b) => a - b);
    const result: Round = {
      replicas: count,
      launchers: launchers.length,
      unlocked,
      errors,
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      max: latencies.at(-1) ?? Number.NaN,
      unlockRequestP99: quantile(requests, 0.99),
      pollsPerSecond,
      pollQueries,
      queriesPerUnlock: queries / Math.max(1, unlocked),
      xactPerUnlock: xact / Math.max(1, unlocked),
      notModified: steadyShare,
    };
    console.log(
      `${count} replica(s): ${unlocked}/${launchers.length} unlocked, p50 ${result.p50.toFixed(0)} ms, p99 ${result.p99.toFixed(0)} ms, ${errors} errors`,
    );
    return result;
  } finally {
    for (const replica of replicas) await stopReplica(replica);
  }
}

async function startReplica(env: Record<string, string>, extra: string[]): Promise<Replica> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--port',
      String(port),
      '--rate-limit',
      '1000000',
      '--burst',
      '1000000',
      '--log-level',
      'warn',
      ...extra,
    ],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: SOCKETS_PER_REPLICA });
  const replica = { child, port, agent };
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ready = await request(replica, 'GET', '/readyz', {}).then(
      (answer) => answer.status === 200,
      () => false,
    );
    if (ready) return replica;
    await sleep(50);
  }
  throw new Error('splinter serve did not become ready');
}

async function stopReplica(replica: Replica): Promise<void> {
  replica.agent.destroy();
  if (replica.child.exitCode !== null) return;
  const exited = new Promise((resolve) => replica.child.once('exit', resolve));
  replica.child.kill('SIGTERM');
  await exited;
}

function request(
  replica: Replica,
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: replica.port, method, path, headers, agent: replica.agent, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            etag: typeof res.headers.etag === 'string' ? res.headers.etag : undefined,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** The replicas' own statement counters, summed. */
async function replicaQueries(replicas: Replica[]): Promise<number> {
  let total = 0;
  for (const replica of replicas) {
    const text = (await request(replica, 'GET', '/metrics', {})).body;
    total += Number(/^splinter_api_database_queries_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  }
  return total;
}

/** Transactions committed in the bench's database, after the statistics of other backends are flushed. */
async function xactCommits(client: SqlClient, databaseUrl: string): Promise<number> {
  // Backends report their counts at most once a second: wait that out so the window is complete.
  await sleep(1100);
  const name = new URL(databaseUrl).pathname.slice(1);
  await client.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await client.query<{ xact_commit: string }>(
    'SELECT xact_commit::text FROM pg_stat_database WHERE datname = $1',
    [name],
  );
  return Number(rows[0]?.xact_commit ?? Number.NaN);
}

/** The 1-minute load average, from /proc/loadavg. */
async function loadAverage(): Promise<string> {
  return (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ')[0] ?? '?';
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

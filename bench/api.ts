import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChainStore, openPostgres } from '@splintertree/chain';
import { createLauncherToken, openSplinter, settingsFromEnvironment } from '@splintertree/core';
import { generatePatchKey, kekIdOf, keyIdOf, wrapKey } from '@splintertree/seal';
import { freePort, freshDatabase } from '@splintertree/testkit';
import autocannon from 'autocannon';
import { CLI, table } from './support.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

/**
 * `npm run bench -- api`: `splinter serve` in its own process, autocannon in this one (the machine's
 * two cores are shared by both). Measures unlock of an active patch (the release-moment stampede,
 * answered from the NOTIFY-invalidated cache), unlock of a patch in preload (423, read from
 * PostgreSQL every time) and /healthz (the bare server, for reference). Logging at info, one line per
 * request, as in production; the rate limit is raised out of the way.
 */
export default async function (): Promise<void> {
  const database = process.env.DATABASE_URL ? undefined : await freshDatabase('bench_api', { migrate: true });
  const url = process.env.DATABASE_URL ?? database!.url;
  const home = await mkdtemp(join(tmpdir(), 'splinter-bench-api-'));
  const kek = generatePatchKey();
  const env = { DATABASE_URL: url, SPLINTER_KEK: Buffer.from(kek).toString('base64'), SPLINTER_HOME: home };
  const client = await openPostgres(url);
  const splinter = await openSplinter({ settings: settingsFromEnvironment(env) });
  let server: ReturnType<typeof spawn> | undefined;
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
        reference: `bench/patches/bench@sha256:${'c'.repeat(64)}`,
        digest: `sha256:${'c'.repeat(64)}`,
        status: 'preload',
        key: { keyId, wrappedKey: wrapKey(kek, key, keyId), kekId: kekIdOf(kek) },
      });
    };
    const active = await preloaded('1');
    await chain.activate({ patchId: active.id, actor: 'bench' });
    const locked = await preloaded('2', active.id);

    const port = await freePort();
    server = spawn(
      process.execPath,
      [CLI, 'serve', '--port', String(port), '--rate-limit', '1000000', '--burst', '1000000'],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const base = `http://127.0.0.1:${port}`;
    await waitReady(base);

    const headers = { authorization: `Bearer ${token}` };
    const scenarios = [
      {
        name: 'unlock, active patch (200)',
        method: 'POST' as const,
        path: `/launcher/patches/${active.id}/unlock`,
      },
      {
        name: 'unlock, preload patch (423)',
        method: 'POST' as const,
        path: `/launcher/patches/${locked.id}/unlock`,
      },
      { name: 'GET /healthz (reference)', method: 'GET' as const, path: '/healthz' },
    ];
    const rows: Array<Record<string, string>> = [];
    for (const scenario of scenarios) {
      // A short warm-up so the JIT and the connection pool are in their steady state.
      await autocannon({
        url: base + scenario.path,
        method: scenario.method,
        headers,
        connections: 8,
        duration: 1,
      });
      const result = await autocannon({
        url: base + scenario.path,
        method: scenario.method,
        headers,
        connections: CONNECTIONS,
        duration: SECONDS,
      });
      const codes = Object.entries(result.statusCodeStats)
        .map(([code, s]) => `${code}x${s.count}`)
        .join(' ');
      rows.push({
        scenario: scenario.name,
        'requests/s': result.requests.average.toFixed(0),
        'p50 ms': result.latency.p50.toFixed(1),
        'p99 ms': result.latency.p99.toFixed(1),
        'max ms': result.latency.max.toFixed(1),
        statuses: codes,
        errors: String(result.errors + result.timeouts),
      });
    }
    const status = await readFile(`/proc/${server.pid}/status`, 'utf8').catch(() => '');
    const peak = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    table(rows);
    console.log(
      `\n${CONNECTIONS} connections, ${SECONDS} s per scenario, server peak RSS ${peak ? `${(Number(peak) / 1024).toFixed(0)} MiB` : '?'}`,
    );
    console.log('target: unlock >= 5,000 requests/s with p99 < 20 ms (load generator on the same 2 cores)');
  } finally {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      server.kill('SIGTERM');
      await exited;
    }
    await splinter.close();
    await client.close();
    await database?.drop();
    await rm(home, { recursive: true, force: true });
  }
}

async function waitReady(base: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await fetch(`${base}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await sleep(50);
  }
  throw new Error('splinter serve did not become ready');
}

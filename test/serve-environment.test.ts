import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FreshDatabase, freePort, freshDatabase } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../apps/cli/src/program.js';
import { CLI, scrubbedEnv, splinterCli } from './support.js';

describe('splinter serve configured from the environment alone, /metrics on its own port', () => {
  let database: FreshDatabase;
  let child: ChildProcess | undefined;
  let operator: Record<string, string>;

  beforeAll(async () => {
    database = await freshDatabase('serve_environment', { migrate: true });
    operator = {
      SPLINTER_HOME: `/tmp/splinter-serve-env-${randomBytes(4).toString('hex')}`,
      DATABASE_URL: database.url,
      SPLINTER_KEK: randomBytes(32).toString('base64'),
    };
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await database?.drop();
  });

  it('gives every flag of serve a SPLINTER_API_* variable, each documented in operations-api.md', async () => {
    const serve = buildProgram().commands.find((command) => command.name() === 'serve')!;
    const docs = await readFile(join(import.meta.dirname, '..', 'docs', 'operations-api.md'), 'utf8');
    // The output options every command has keep their own variables (SPLINTER_PROGRESS).
    const shared = new Set(['--json', '--debug', '--progress']);
    const options = serve.options.filter((option) => !shared.has(option.long!));
    expect(options.length).toBeGreaterThanOrEqual(26);
    for (const option of options) {
      const expected = `SPLINTER_API_${option.long!.slice(2).replaceAll('-', '_').toUpperCase()}`;
      expect(option.envVar, option.long).toBe(expected);
      expect(docs, option.long).toContain(`| \`${option.long}\` | \`${expected}\` |`);
    }
  });

  it('listens where the environment says, serves /metrics only on the metrics port, standard process names', async () => {
    const created = await splinterCli(['token', 'create', '--realm', 'eu-1', '--json'], operator);
    const token = (JSON.parse(created.stdout) as { token: string }).token;
    const [port, metricsPort] = [await freePort(), await freePort()];
    child = spawn(process.execPath, [CLI, 'serve'], {
      env: scrubbedEnv({
        ...operator,
        SPLINTER_API_PORT: String(port),
        SPLINTER_API_HOST: '127.0.0.1',
        SPLINTER_API_METRICS_PORT: String(metricsPort),
        SPLINTER_API_RATE_LIMIT: '1',
        SPLINTER_API_BURST: '1',
        SPLINTER_API_LOG_LEVEL: 'info',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const started = await new Promise<{ url: string; metricsUrl: string }>((resolve, reject) => {
      const read = (chunk: Buffer) => {
        output += chunk;
        const line = output.split('\n').find((l) => l.includes('launcher API listening'));
        if (line) resolve(JSON.parse(line) as { url: string; metricsUrl: string });
      };
      child!.stdout!.on('data', read);
      child!.stderr!.on('data', read);
      child!.once('exit', (code) => reject(new Error(`serve exited ${code}: ${output}`)));
    });
    expect(started.url).toBe(`http://127.0.0.1:${port}`);
    expect(started.metricsUrl).toBe(`http://127.0.0.1:${metricsPort}`);

    const ask = () =>
      fetch(`${started.url}/launcher/realms/eu-1`, { headers: { authorization: `Bearer ${token}` } });
    expect((await ask()).status).not.toBe(429);
    expect((await ask()).status).toBe(429); // SPLINTER_API_BURST=1

    const publicMetrics = await fetch(`${started.url}/metrics`);
    expect(publicMetrics.status).toBe(404);
    expect(((await publicMetrics.json()) as { code: string }).code).toBe('NOT_FOUND');
    const scraped = await fetch(`${started.metricsUrl}/metrics`);
    expect(scraped.status).toBe(200);
    const text = await scraped.text();
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
    ]) {
      expect(text).toMatch(new RegExp(`^${name} `, 'm'));
    }
    expect(text).not.toContain('splinter_api_process_');
    expect(text).toMatch(
      /splinter_api_requests_total\{route="\/launcher\/realms\/:realm",method="GET",status="429"\} 1/,
    );
    expect((await fetch(`${started.metricsUrl}/launcher/realms/eu-1`)).status).toBe(404);
  });
});

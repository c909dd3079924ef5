import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import {
  type FreshDatabase,
  freePort,
  freshDatabase,
  type RunningRegistry,
  startRegistry,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { podman, podmanSetup, testBaseImage } from './container-base.js';
import { SAMPLE, snapshot, tempDir } from './support.js';

const ROOT = join(import.meta.dirname, '..');
const BUILD_TIMEOUT_MS = 15 * 60_000;

/**
 * The Containerfile, built and run with podman: from a local base (debootstrap + this machine's node,
 * see container-base.ts) passed as NODE_IMAGE, since no image can be pulled here. The image runs as a
 * non-root user without a compiler, migrates a database, serves /readyz on every address against the
 * machine's PostgreSQL, and pushes and pulls a patch against a test registry.
 */
describe('the container image (podman)', () => {
  let work: string;
  let setup: Awaited<ReturnType<typeof podmanSetup>>;
  let image: string;
  let database: FreshDatabase;
  let registry: RunningRegistry;
  const names: string[] = [];
  let env: string[];

  const runImage = (args: string[], options: { volumes?: string[]; entrypoint?: string } = {}) =>
    podman(
      setup,
      [
        'run',
        '--rm',
        '--network',
        'host',
        ...env,
        ...(options.volumes ?? []).flatMap((volume) => ['-v', volume]),
        ...(options.entrypoint === undefined ? [] : ['--entrypoint', options.entrypoint]),
        image,
        ...args,
      ],
      { timeoutMs: 120_000 },
    );

  beforeAll(async () => {
    work = await tempDir('container');
    setup = await podmanSetup(work);
    // Images left untagged by earlier runs (each build retags) older than a day; recent ones stay as cache.
    await podman(setup, ['image', 'prune', '--force', '--filter', 'until=24h']);
    const base = await testBaseImage(setup);
    image = `localhost/splinter-test:${randomBytes(4).toString('hex')}`;
    const built = await podman(
      setup,
      [
        'build',
        '--network',
        'host',
        '--build-arg',
        `NODE_IMAGE=${base}`,
        '-t',
        image,
        '-f',
        'Containerfile',
        ROOT,
      ],
      { timeoutMs: BUILD_TIMEOUT_MS },
    );
    if (built.code !== 0)
      throw new Error(`podman build failed (${built.code}): ${built.stderr.slice(-4000)}`);
    database = await freshDatabase('container');
    registry = await startRegistry();
    env = ['-e', `DATABASE_URL=${database.url}`, '-e', `SPLINTER_KEK=${randomBytes(32).toString('base64')}`];
  }, BUILD_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    if (setup) {
      for (const name of names) await podman(setup, ['rm', '--force', name]);
      if (image) await podman(setup, ['rmi', '--force', image]);
    }
    await registry?.stop();
    await database?.drop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('publishes the official node image as its base and runs as a non-root user without a compiler', async () => {
    const containerfile = await readFile(join(ROOT, 'Containerfile'), 'utf8');
    expect(containerfile).toMatch(/^ARG NODE_IMAGE=docker\.io\/library\/node:20-bookworm-slim$/m);
    expect(containerfile.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2);

    const inspected = await podman(setup, ['image', 'inspect', image, '--format', '{{json .Config}}']);
    const config = JSON.parse(inspected.stdout) as { User: string; Entrypoint: string[]; Cmd: string[] };
    expect(config.User).toBe('10001:10001');
    expect(config.Entrypoint).toEqual(['splinter']);
    expect(config.Cmd).toEqual(['serve', '--host', '0.0.0.0', '--port', '8080']);

    const inside = await runImage(
      [
        '-c',
        // Nothing of the build stage: no compiler, no TypeScript, no sources, no dev dependencies.
        'id -u; for tool in gcc cc c++ g++ clang make ld as tsc; do command -v "$tool" || true; done; ' +
          'ls -d /app/node_modules/typescript /app/node_modules/vitest /app/node_modules/turbo /app/packages/*/src /app/apps/*/src 2>/dev/null || true',
      ],
      { entrypoint: 'sh' },
    );
    expect(inside.code, inside.stderr).toBe(0);
    expect(inside.stdout).toBe('10001\n');
    const version = await runImage(['--version']);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('migrates the database with `db migrate`, then serves /readyz on every address', async () => {
    const migrated = await runImage(['db', 'migrate']);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(/^migrated the postgres schema to version \d+/);

    const port = await freePort();
    const name = `splinter-serve-${randomBytes(4).toString('hex')}`;
    names.push(name);
    const [binary, ...global] = setup.podman;
    const child: ChildProcess = spawn(
      binary!,
      [
        ...global,
        'run',
        '--rm',
        '--name',
        name,
        '--network',
        'host',
        ...env,
        image,
        'serve',
        '--host',
        '0.0.0.0',
        '--port',
        String(port),
      ],
      { env: setup.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const listening = await new Promise<string>((resolve, reject) => {
      const read = (chunk: Buffer) => {
        output += chunk;
        const line = output.split('\n').find((each) => each.includes('launcher API listening'));
        if (line) resolve((JSON.parse(line) as { url: string }).url);
      };
      child.stdout?.on('data', read);
      child.stderr?.on('data', read);
      child.once('exit', (code) => reject(new Error(`splinter serve exited ${code}: ${output}`)));
    });
    try {
      expect(listening).toBe(`http://0.0.0.0:${port}`);
      // Reached on loopback and on the machine's own address: bound to every address, not 127.0.0.1.
      const external = Object.values(networkInterfaces())
        .flat()
        .find((address) => address?.family === 'IPv4' && !address.internal)?.address;
      expect(external, 'a non-loopback IPv4 address on this machine').toBeDefined();
      for (const host of ['127.0.0.1', external!]) {
        const ready = await fetch(`http://${host}:${port}/readyz`);
        expect(ready.status, `${host}: ${await ready.clone().text()}`).toBe(200);
        expect(await ready.json()).toMatchObject({ ready: true });
      }
    } finally {
      child.kill('SIGTERM');
    }
    // podman passes SIGTERM on; the API drains and exits cleanly.
    expect(await exited, output).toBe(0);
  });

  it('pushes a patch to a registry and pulls it back, byte for byte', async () => {
    const out = join(work, 'out');
    await mkdir(out);
    await chmod(out, 0o777);
    const pushed = await runImage(
      [
        'patch',
        'push',
        '/in',
        '--realm',
        'eu-1',
        '--version',
        '1.0.0',
        '--registry',
        registry.host,
        '--plain-http',
        '--json',
      ],
      { volumes: [`${SAMPLE}:/in:ro`] },
    );
    expect(pushed.code, pushed.stderr).toBe(0);
    const reference = (JSON.parse(pushed.stdout) as { reference: string }).reference;
    expect(reference).toMatch(new RegExp(`^${registry.host}/patches/eu-1`));

    const pulled = await runImage(
      [
        'patch',
        'pull',
        `${registry.host}/patches/eu-1:1.0.0`,
        '--output',
        '/out/tree',
        '--plain-http',
        '--insecure-skip-verify',
      ],
      { volumes: [`${out}:/out`] },
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshot(join(out, 'tree'))).toEqual(await snapshot(SAMPLE));
  });
});

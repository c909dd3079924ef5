import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { watch } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FaultProxy, type RunningRegistry, startFaultProxy, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CLI, scrubbedEnv, snapshot, splinterCli, tempDir } from './support.js';

const MIB = 1024 * 1024;

/** What a run can leave under SPLINTER_HOME or beside an output: none of it may outlive the run. */
async function leftovers(home: string, beside?: string): Promise<string[]> {
  const found: string[] = [];
  const list = async (dir: string) => readdir(dir).catch(() => [] as string[]);
  for (const name of await list(join(home, 'tmp'))) found.push(`tmp/${name}`);
  for (const name of await list(join(home, 'journal'))) found.push(`journal/${name}`);
  for (const name of await list(join(home, 'packs'))) if (name.includes('.tmp-')) found.push(`packs/${name}`);
  for (const name of await list(join(home, 'store', 'ingest'))) found.push(`store/ingest/${name}`);
  if (beside) for (const name of await list(beside)) if (name.startsWith('.splinter-')) found.push(name);
  return found;
}

/** Resolves once `dir` holds a name `match` accepts (inotify, not polling). */
async function untilListed(dir: string, match: (name: string) => boolean): Promise<void> {
  await mkdir(dir, { recursive: true });
  await new Promise<void>((resolve) => {
    const watcher = watch(dir, () => check());
    const check = () =>
      readdir(dir).then((names) => {
        if (names.some(match)) {
          watcher.close();
          resolve();
        }
      });
    void check();
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) =>
    child.exitCode !== null || child.signalCode !== null
      ? resolve(child.exitCode)
      : child.once('exit', (code) => resolve(code)),
  );
}

describe('interrupted pushes and pulls leave nothing behind', () => {
  let work: string;
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let tree: string;

  const env = (home: string) => ({ SPLINTER_HOME: home });
  const spawnCli = (args: string[], home: string) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: scrubbedEnv(env(home)),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let text = '';
    child.stderr.on('data', (data) => {
      text += data;
    });
    return Object.assign(child, { stderrText: () => text });
  };
  /** An interrupted run says so in one line, and nothing else goes wrong on the way out. */
  const expectOneInterruptedLine = (stderr: string) =>
    expect(
      stderr.split('\n').filter((line) => line.startsWith('splinter: ') && !line.includes('warning')),
    ).toEqual(['splinter: INTERRUPTED: stopped; nothing of this run was left behind']);
  const pushArgs = (name: string, version = '1') => [
    'mod',
    'push',
    tree,
    '--name',
    name,
    '--version',
    version,
    '--registry',
    proxy.host,
    '--plain-http',
    '--concurrency',
    '1',
  ];
  /**
   * Upload sessions the registry holds open for a repository: Distribution's filesystem layout keeps
   * each in `_uploads/<id>/` with its `startedat` and `data` (a cancelled session keeps only an empty
   * `hashstates/` folder in Distribution 2.8, which its purger ignores).
   */
  const openSessions = async (repository: string) => {
    const root = join(
      registry.storageDir,
      'docker',
      'registry',
      'v2',
      'repositories',
      repository,
      '_uploads',
    );
    const open: string[] = [];
    for (const id of await readdir(root).catch(() => [] as string[])) {
      if ((await readdir(join(root, id))).includes('startedat')) open.push(id);
    }
    return open;
  };
  const uploadDeletes = (from: number) =>
    proxy.log.slice(from).filter((r) => r.method === 'DELETE' && r.path.includes('/blobs/uploads/'));

  beforeAll(async () => {
    work = await tempDir('leftovers');
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    tree = join(work, 'tree');
    await mkdir(join(tree, 'data'), { recursive: true });
    await writeFile(join(tree, 'data', 'big.pak'), randomBytes(3 * MIB));
    await writeFile(join(tree, 'readme.txt'), 'hello\n');
  });

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    proxy.clear();
    proxy.log.length = 0;
  });

  it('ten runs killed with kill -9 at random moments, then one more of each: nothing is left', async () => {
    const home = join(work, 'random-kills');
    const publisher = join(work, 'random-publisher');
    const pushed = await splinterCli([...pushArgs('random'), '--json'], env(publisher));
    expect(pushed.code, pushed.stderr).toBe(0);
    const manifest = (await (
      await fetch(`${registry.url}/v2/mods/random/manifests/1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).json()) as { layers: Array<{ digest: string; size: number }> };
    const pack = manifest.layers.reduce((a, b) => (a.size >= b.size ? a : b));
    const beside = join(work, 'random-out');
    const output = join(beside, 'game');
    const pullArgs = [
      'mod',
      'pull',
      `${proxy.host}/mods/random:1`,
      '--output',
      output,
      '--replace',
      '--plain-http',
      '--insecure-skip-verify',
    ];
    const seed = Number(process.env.SPLINTER_TEST_KILL_SEED ?? Date.now() % 100_000);
    let state = seed;
    const random = (n: number) => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state % n;
    };
    const repositories: string[] = [];
    for (let round = 0; round < 10; round++) {
      proxy.clear();
      proxy.log.length = 0;
      let child: ReturnType<typeof spawnCli>;
      if (random(2) === 0) {
        // A push of a fresh repository, killed at a random one of its uploads (3 blobs: config, root, pack).
        const name = `random-${round}`;
        repositories.push(`mods/${name}`);
        const before = random(3);
        if (before > 0)
          proxy.add({ method: 'PUT', path: /\/blobs\/uploads\//, times: before, fault: { kind: 'pass' } });
        proxy.add({ method: 'PUT', path: /\/blobs\/uploads\//, fault: { kind: 'hold' } });
        child = spawnCli(pushArgs(name), home);
      } else {
        // A pull, killed a random number of bytes into its pack.
        proxy.add({
          method: 'GET',
          path: /\/blobs\/sha256:/,
          range: true,
          fault: { kind: 'status', status: 416 },
        });
        proxy.add({
          method: 'GET',
          path: new RegExp(`/blobs/${pack.digest}`),
          fault: { kind: 'stall-after', bytes: 1 + random(pack.size - 1) },
        });
        child = spawnCli(pullArgs, home);
      }
      await proxy.seen((r) => r.held);
      child.kill('SIGKILL');
      await exited(child);
    }
    proxy.clear();
    const pulled = await splinterCli(pullArgs, env(home));
    expect(pulled.code, `seed ${seed}: ${pulled.stderr}`).toBe(0);
    expect(await snapshot(output)).toEqual(await snapshot(tree));
    const again = await splinterCli(pushArgs('random-final'), env(home));
    expect(again.code, `seed ${seed}: ${again.stderr}`).toBe(0);
    expect(await leftovers(home, beside), `seed ${seed}`).toEqual([]);
    expect(await readdir(beside)).toEqual(['game']);
    for (const repository of repositories) expect(await openSessions(repository), `seed ${seed}`).toEqual([]);
  });

  it('a push killed with kill -9 mid-upload: the next run removes its work folder and cancels its session', async () => {
    const home = join(work, 'push-killed');
    proxy.add({ method: 'PUT', path: /\/blobs\/uploads\//, fault: { kind: 'hold' } });
    const child = spawnCli(pushArgs('killed'), home);
    await proxy.seen((r) => r.method === 'PUT' && r.held);
    child.kill('SIGKILL');
    await exited(child);
    // What the kill left: the work folder, the journal entry, the registry's open session.
    const left = await leftovers(home);
    expect(left.filter((name) => name.startsWith('tmp/push-'))).toHaveLength(1);
    expect(left.filter((name) => name.startsWith('journal/'))).toHaveLength(1);
    const abandoned = await openSessions('mods/killed');
    expect(abandoned).toHaveLength(1);

    proxy.clear();
    const mark = proxy.log.length;
    const again = await splinterCli(pushArgs('killed'), env(home));
    expect(again.code, again.stderr).toBe(0);
    expect(await leftovers(home)).toEqual([]);
    expect(await openSessions('mods/killed')).toEqual([]);
    const deletes = uploadDeletes(mark);
    expect(deletes.some((r) => r.path.includes(abandoned[0]!) && r.status === 204)).toBe(true);
  });

  it('Ctrl-C during a push cancels its upload session and removes its work folder before it exits', async () => {
    const home = join(work, 'push-interrupted');
    proxy.add({ method: 'PUT', path: /\/blobs\/uploads\//, fault: { kind: 'hold' } });
    const mark = proxy.log.length;
    const child = spawnCli(pushArgs('interrupted'), home);
    await proxy.seen((r) => r.method === 'PUT' && r.held);
    expect(await openSessions('mods/interrupted')).toHaveLength(1);
    child.kill('SIGINT');
    expect(await exited(child)).toBe(130);
    expectOneInterruptedLine(child.stderrText());
    expect(await leftovers(home)).toEqual([]);
    expect(await openSessions('mods/interrupted')).toEqual([]);
    expect(uploadDeletes(mark).map((r) => r.status)).toContain(204);
  });

  it('Ctrl-C during a pull removes its partial pack download and leaves no output', async () => {
    const home = join(work, 'pull-interrupted');
    const pushed = await splinterCli([...pushArgs('pulled'), '--json'], env(join(work, 'publisher')));
    expect(pushed.code, pushed.stderr).toBe(0);
    const manifest = (await (
      await fetch(`${registry.url}/v2/mods/pulled/manifests/1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).json()) as { layers: Array<{ digest: string; size: number }> };
    const pack = manifest.layers.reduce((a, b) => (a.size >= b.size ? a : b));
    // Ranged reads are refused, so the pack is read whole into a temporary file, which stalls.
    proxy.add({
      method: 'GET',
      path: /\/blobs\/sha256:/,
      range: true,
      fault: { kind: 'status', status: 416 },
    });
    proxy.add({
      method: 'GET',
      path: new RegExp(`/blobs/${pack.digest}`),
      fault: { kind: 'stall-after', bytes: 256 * 1024 },
    });
    const beside = join(work, 'pull-interrupted-out');
    await mkdir(beside, { recursive: true });
    const child = spawnCli(
      [
        'mod',
        'pull',
        `${proxy.host}/mods/pulled:1`,
        '--output',
        join(beside, 'game'),
        '--plain-http',
        '--insecure-skip-verify',
      ],
      home,
    );
    await proxy.seen((r) => r.held && r.path.includes(pack.digest));
    await untilListed(join(home, 'packs'), (name) => name.includes('.tmp-'));
    child.kill('SIGINT');
    expect(await exited(child)).toBe(130);
    expectOneInterruptedLine(child.stderrText());
    expect(await leftovers(home, beside)).toEqual([]);
    expect(await readdir(beside)).toEqual([]);
    // And the next pull installs the whole tree.
    proxy.clear();
    const pulled = await splinterCli(
      [
        'mod',
        'pull',
        `${proxy.host}/mods/pulled:1`,
        '--output',
        join(beside, 'game'),
        '--plain-http',
        '--insecure-skip-verify',
      ],
      env(home),
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshot(join(beside, 'game'))).toEqual(await snapshot(tree));
  });
});

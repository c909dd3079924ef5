import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdir, readFile, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool } from '@splintertree/testkit';

const run = promisify(execFile);

/** Where the debootstrapped root file systems are kept between runs (survives reboots, unlike /tmp). */
const CACHE_DIR = process.env.SPLINTER_TEST_CONTAINER_CACHE ?? '/var/tmp/splinter-container-base';
const MIRROR = process.env.SPLINTER_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';

/**
 * podman as this machine runs it: Debian's runc (crun refuses this machine's cgroups), cgroupfs,
 * no default ulimits, host networking. Writes the containers.conf into `dir`; returns the env and the
 * global flags every podman call takes.
 */
export async function podmanSetup(dir: string): Promise<{ env: NodeJS.ProcessEnv; podman: string[] }> {
  const config = join(dir, 'containers.conf');
  await writeFile(
    config,
    [
      '[containers]',
      'default_ulimits = []',
      '',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'runtime = "runc"',
      'events_logger = "file"',
      '',
    ].join('\n'),
  );
  requireTool('runc');
  return {
    env: { ...process.env, CONTAINERS_CONF: config },
    podman: [requireTool('podman'), '--runtime', requireTool('runc'), '--cgroup-manager', 'cgroupfs'],
  };
}

/** Runs podman with the setup's flags; rejects with its stderr on failure. */
export async function podman(
  setup: { env: NodeJS.ProcessEnv; podman: string[] },
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string; code: number }> {
  const [binary, ...global] = setup.podman;
  return new Promise((resolve) => {
    const child = spawn(binary!, [...global, ...args], { env: setup.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code: code ?? -1 });
    });
  });
}

/**
 * A local stand-in for the official node image, since no image can be pulled here: Debian (the
 * machine's release, `debootstrap --variant=minbase`, with ca-certificates) plus the machine's own node
 * and npm at /usr/local, as the official image lays them out, and the machine's CA bundle and global
 * npmrc (the network here goes through a proxy with its own CA). Cached by content: the root file
 * system under CACHE_DIR and the image in podman's storage, so a rerun only checks that both exist.
 */
export async function testBaseImage(setup: { env: NodeJS.ProcessEnv; podman: string[] }): Promise<string> {
  const node = await realpath(process.execPath);
  const npmDir = dirname(dirname(await realpath(requireTool('npm'))));
  const suite =
    (await readFile('/etc/os-release', 'utf8')).match(/^VERSION_CODENAME=(\w+)$/m)?.[1] ?? 'bookworm';
  const caBundle = '/etc/ssl/certs/ca-certificates.crt';
  const npmrc = join(dirname(dirname(node)), 'etc', 'npmrc');
  const optional = async (path: string) => readFile(path).catch(() => Buffer.alloc(0));
  const { stdout: npmVersion } = await run(process.execPath, [
    join(npmDir, 'bin', 'npm-cli.js'),
    '--version',
  ]);
  const key = createHash('sha256')
    .update(JSON.stringify({ node: process.version, npm: npmVersion.trim(), suite, MIRROR, layout: 1 }))
    .update(await optional(caBundle))
    .update(await optional(npmrc))
    .digest('hex')
    .slice(0, 16);
  const image = `localhost/splinter-test-node:${key}`;
  if ((await podman(setup, ['image', 'exists', image])).code === 0) return image;

  const rootfs = join(CACHE_DIR, key, 'rootfs');
  const complete = join(CACHE_DIR, key, 'complete');
  if ((await optional(complete)).length === 0) {
    const staging = `${rootfs}.staging-${process.pid}`;
    await rm(staging, { recursive: true, force: true });
    await mkdir(dirname(staging), { recursive: true });
    await run(
      requireTool('debootstrap'),
      ['--variant=minbase', '--include=ca-certificates', suite, staging, MIRROR],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    await mkdir(join(staging, 'usr', 'local', 'lib', 'node_modules'), { recursive: true });
    await mkdir(join(staging, 'usr', 'local', 'etc'), { recursive: true });
    await cp(node, join(staging, 'usr', 'local', 'bin', 'node'));
    await chmod(join(staging, 'usr', 'local', 'bin', 'node'), 0o755);
    await cp(npmDir, join(staging, 'usr', 'local', 'lib', 'node_modules', 'npm'), { recursive: true });
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(staging, 'usr', 'local', 'bin', 'npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(staging, 'usr', 'local', 'bin', 'npx'));
    await cp(caBundle, join(staging, 'etc', 'ssl', 'certs', 'ca-certificates.crt'));
    const rc = await optional(npmrc);
    if (rc.length > 0) await writeFile(join(staging, 'usr', 'local', 'etc', 'npmrc'), rc);
    await rm(rootfs, { recursive: true, force: true });
    await rename(staging, rootfs);
    await writeFile(complete, `${new Date().toISOString()}\n`);
  }
  // `podman import` of a tar of the tree: no registry, no pull.
  const tar = spawn('tar', ['-C', rootfs, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [binary, ...global] = setup.podman;
  const imported = spawn(binary!, [...global, 'import', '-', image], {
    env: setup.env,
    stdio: [tar.stdout, 'ignore', 'pipe'],
  });
  let stderr = '';
  imported.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk;
  });
  const code = await new Promise<number | null>((resolve) => imported.once('close', resolve));
  if (code !== 0) throw new Error(`podman import of the test base failed (${code}): ${stderr}`);
  return image;
}

import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningRegistry, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, SAMPLE, snapshot, tempDir } from './support.js';

const ROOT = join(import.meta.dirname, '..');
const WORKSPACE_FOLDERS = ['packages', 'apps'];

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  license?: string;
  engines?: { node?: string };
  files?: string[];
  exports?: Record<string, { types?: string; default?: string }>;
  bin?: Record<string, string>;
  publishConfig?: { access?: string };
}

async function workspaces(): Promise<Array<{ folder: string; manifest: Manifest }>> {
  const found = [];
  for (const parent of WORKSPACE_FOLDERS) {
    for (const name of (await readdir(join(ROOT, parent))).sort()) {
      const folder = join(parent, name);
      const manifest = JSON.parse(await readFile(join(ROOT, folder, 'package.json'), 'utf8')) as Manifest;
      found.push({ folder, manifest });
    }
  }
  return found;
}

/** npm's own cache, so that the install reuses what `npm install` in the clone already downloaded. */
async function npmCache(): Promise<string> {
  const { stdout } = await run('npm', ['config', 'get', 'cache'], { cwd: ROOT });
  return stdout.trim();
}

describe('a fresh install from the packed tarballs, outside the repository', () => {
  let work: string;
  let registry: RunningRegistry;
  let splinterBin: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    work = await tempDir('install');
    registry = await startRegistry();
    const published = (await workspaces()).filter((w) => !w.manifest.private);
    await run('npm', ['run', 'pack', '--silent', '--', work], { cwd: ROOT });
    const prefix = join(work, 'prefix');
    await mkdir(prefix);
    await writeFile(join(prefix, 'package.json'), '{ "private": true }\n');
    const tarballs = (await readdir(work))
      .filter((name) => name.endsWith('.tgz'))
      .map((name) => join(work, name));
    expect(tarballs).toHaveLength(published.length);
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--cache', await npmCache(), ...tarballs],
      { cwd: prefix, env: { PATH: process.env.PATH ?? '', HOME: work } },
    );
    splinterBin = join(prefix, 'node_modules', '.bin', 'splinter');
    env = {
      PATH: process.env.PATH ?? '',
      HOME: work,
      SPLINTER_HOME: join(work, 'home'),
      COSIGN_PASSWORD: 'install',
    };
  }, 300_000);

  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('publishes every package but the test kit, each with a licence, engines, types and a README', async () => {
    const all = await workspaces();
    const published = all.filter((w) => !w.manifest.private);
    expect(all.filter((w) => w.manifest.private).map((w) => w.folder)).toEqual(['packages/testkit']);
    const root = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as Manifest;
    for (const { folder, manifest } of published) {
      expect(manifest.name, folder).toMatch(/^@splintertree\//);
      expect(manifest.license, folder).toBe('Apache-2.0');
      expect(manifest.engines?.node, folder).toBe(root.engines?.node);
      expect(manifest.publishConfig?.access, folder).toBe('public');
      expect(manifest.exports?.['.']?.types, folder).toBe('./dist/index.d.ts');
      expect((await stat(join(ROOT, folder, 'README.md'))).size, folder).toBeGreaterThan(200);
    }
    expect(
      (await readFile(join(ROOT, 'LICENSE'), 'utf8')).startsWith(
        '\n                                 Apache License',
      ),
    ).toBe(true);
  });

  it('runs the installed splinter: --version, a key pair, a signed push and a verified pull', async () => {
    const cli = JSON.parse(await readFile(join(ROOT, 'apps', 'cli', 'package.json'), 'utf8')) as Manifest;
    const splinter = (args: string[]) => run(splinterBin, args, { cwd: work, env });
    expect((await splinter(['--version'])).stdout.trim()).toBe(cli.version);

    const build = join(work, 'build');
    await cp(SAMPLE, build, { recursive: true, verbatimSymlinks: true });
    await splinter(['key', 'generate', '--output-key-prefix', join(work, 'release')]);
    const pushed = await splinter([
      'patch',
      'push',
      build,
      '--realm',
      'demo',
      '--version',
      '1.0.0',
      '--registry',
      `${registry.host}/game`,
      '--plain-http',
      '--key',
      join(work, 'release.key'),
      '--json',
    ]);
    const { reference } = JSON.parse(pushed.stdout) as { reference: string };
    expect(reference).toBe(`${registry.host}/game/demo:1.0.0`);

    await splinter([
      'patch',
      'pull',
      reference,
      '--output',
      join(work, 'game'),
      '--plain-http',
      '--key',
      join(work, 'release.pub'),
    ]);
    expect(await snapshot(join(work, 'game'))).toEqual(await snapshot(SAMPLE));
  });

  it('ships each tarball with the licence and without sources or tests', async () => {
    const listing = await run('tar', ['-tzf', join(work, 'splintertree-pack-0.1.0.tgz')]);
    const files = listing.stdout.trim().split('\n');
    expect(files).toContain('package/LICENSE');
    expect(files).toContain('package/README.md');
    expect(files.filter((f) => f.startsWith('package/src/') || f.includes('/test/'))).toEqual([]);
  });
});

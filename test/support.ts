import { type ChildProcess, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const run = promisify(execFile);
export const CLI = join(import.meta.dirname, '..', 'apps', 'cli', 'bin', 'splinter.js');
export const SAMPLE = join(import.meta.dirname, '..', 'fixtures', 'sample-patch');
export const SAMPLE_MOD = join(import.meta.dirname, '..', 'fixtures', 'sample-mod');

/** The media types of a chunked version's layers: one index root first, then its packs. */
export const MediaTypes = {
  root: 'application/vnd.splintertree.root.v1+json',
  sealedRoot: 'application/vnd.splintertree.root.v1.sealed',
  pack: 'application/vnd.splintertree.pack.v1',
} as const;

/** An empty home, so that nothing of the developer's (~/.docker, ~/.splinter) reaches a child. */
const EMPTY_HOME = mkdtempSync(join(tmpdir(), 'splinter-test-home-'));

/**
 * The whole environment a child process of a test gets: a path to find node and the tools, an empty home,
 * and what the test sets. A developer's DATABASE_URL, SPLINTER_KEK or registry credentials never leak in.
 */
export function scrubbedEnv(env: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: EMPTY_HOME,
    LANG: 'C.UTF-8',
    TMPDIR: tmpdir(),
    ...env,
  };
}

/** What a spawned child has written so far, read as it comes. */
export function captureOutput(child: ChildProcess): { stdout: () => string; stderr: () => string } {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  return { stdout: () => stdout, stderr: () => stderr };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `splinter` as a user would, returning its exit code and output instead of throwing. */
export async function splinterCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      // Progress lines would interleave with the one-line errors tests read; progress tests ask for them.
      env: scrubbedEnv({ SPLINTER_PROGRESS: 'none', ...env }),
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** What `--json` push, pull and fetch report about what they moved (`transfer`): one vocabulary. */
export interface TransferJson {
  transferred: number;
  reused: number;
  mounted: number;
  bytes: number;
  reusedBytes: number;
  requests: number;
  wholePacks: number;
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `splinter-${prefix}-`));
}

export type Snapshot = Record<string, string>;

/** Every entry of a tree as `type mode content-hash|link-target`, for exact comparisons. */
export async function snapshot(root: string, relative = ''): Promise<Snapshot> {
  const result: Snapshot = {};
  for (const name of (await readdir(join(root, relative))).sort()) {
    const path = relative ? `${relative}/${name}` : name;
    const info = await lstat(join(root, path));
    if (info.isDirectory()) {
      result[path] = 'dir';
      Object.assign(result, await snapshot(root, path));
    } else if (info.isSymbolicLink()) {
      result[path] = `link ${await readlink(join(root, path))}`;
    } else {
      const hash = createHash('sha256')
        .update(await readFile(join(root, path)))
        .digest('hex');
      result[path] = `file ${(info.mode & 0o777).toString(8)} ${hash}`;
    }
  }
  return result;
}

/** Total bytes of the regular files under a folder. */
export async function treeBytes(root: string): Promise<number> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  let total = 0;
  for (const entry of entries) {
    if (entry.isFile()) total += (await lstat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OciLayoutTarget } from '@splintertree/oci';
import {
  type IndexEntry,
  type IndexRoot,
  type KeyRing,
  type PackCache,
  type Published,
  type PublishOptions,
  packDescriptor,
  publishTree,
  readIndex,
} from '@splintertree/pack';

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `splinter-${prefix}-`));
}

/**
 * Publishes `dir` into `store` as a publisher does (each pack uploaded as it closes), then reads its
 * index back through `cache` as a client does.
 */
export async function publishInto(
  store: OciLayoutTarget,
  cache: PackCache,
  dir: string,
  options: Partial<Omit<PublishOptions, 'dir' | 'onPack'>> & { keys?: KeyRing } = {},
): Promise<{ root: IndexRoot; entries: IndexEntry[]; published: Published }> {
  const { keys, ...publish } = options;
  const uploads: Array<Promise<void>> = [];
  const published = await publishTree({
    workDir: await tempDir('work'),
    ...publish,
    dir,
    onPack: (pack) => uploads.push(store.push(packDescriptor(pack.entry), createReadStream(pack.path))),
  });
  await Promise.all(uploads);
  const entries = await readIndex(published.root, {
    cache,
    remote: store,
    keys: keys ?? new Map(),
    concurrency: 2,
  });
  return { root: published.root, entries, published };
}

/** A small game-like tree: nested folders, an empty folder, an executable, a symlink, a large file. */
export async function makeTree(
  root: string,
  options: { largeBytes?: number; smallFiles?: number } = {},
): Promise<void> {
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'data', 'maps'), { recursive: true });
  await mkdir(join(root, 'data', 'empty'), { recursive: true });
  await writeFile(join(root, 'bin', 'game'), '#!/bin/sh\necho game\n');
  await chmod(join(root, 'bin', 'game'), 0o755);
  for (let i = 0; i < (options.smallFiles ?? 40); i++) {
    await writeFile(
      join(root, 'data', 'maps', `map-${String(i).padStart(3, '0')}.dat`),
      randomBytes(100 + i * 37),
    );
  }
  await symlink('maps/map-000.dat', join(root, 'data', 'current-map'));
  await writeFile(join(root, 'data', 'big.pak'), randomBytes(options.largeBytes ?? 5 * 1024 * 1024));
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

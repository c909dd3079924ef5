import { createHash, randomBytes } from 'node:crypto';
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
import { PassThrough, type Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { type Descriptor, MediaType } from '@splinter/oci';
import { type LayerPlan, PackAnnotation, type PackOptions, planLayers } from '@splinter/pack';
import { type Header as Headers, pack as tarPack } from 'tar-stream';

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `splinter-${prefix}-`));
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

export interface PackedLayer {
  plan: LayerPlan;
  bytes: Buffer;
  descriptor: Descriptor;
}

/** Packs a tree into memory (test trees are small) with full descriptors, as core does on disk. */
export async function packToMemory(root: string, options?: PackOptions): Promise<PackedLayer[]> {
  const plans = await planLayers(root, options);
  const layers: PackedLayer[] = [];
  for (const plan of plans) {
    const opened = plan.open();
    const chunks: Buffer[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    const annotations = { ...plan.annotations, ...(await opened.extraAnnotations) };
    layers.push({
      plan,
      bytes,
      descriptor: {
        mediaType: plan.mediaType,
        digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
        size: bytes.byteLength,
        annotations,
      },
    });
  }
  return layers;
}

export function streamOf(bytes: Buffer): Readable {
  const stream = new PassThrough();
  stream.end(bytes);
  return stream;
}

export type Entry = Partial<Headers> & { name: string; body?: Buffer };

/** A tar of exactly these entries, hostile ones included (tar-stream writes what it is given). */
export async function tarOf(entries: Entry[]): Promise<Buffer> {
  const tar = tarPack();
  const chunks: Buffer[] = [];
  tar.on('data', (chunk: unknown) => {
    chunks.push(chunk as Buffer);
  });
  const done = new Promise<void>((resolve) => tar.on('end', () => resolve()));
  for (const { body, ...header } of entries) tar.entry(header, body ?? '');
  tar.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A group layer titled `g` holding `tar`, with the annotations pack gives a group. */
export function groupLayer(
  tar: Buffer,
  annotations: Record<string, string> = {},
): { descriptor: Descriptor; bytes: Buffer } {
  const bytes = gzipSync(tar);
  return {
    bytes,
    descriptor: {
      mediaType: MediaType.LayerTarGzip,
      digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
      size: bytes.byteLength,
      annotations: {
        'org.opencontainers.image.title': 'g',
        'io.deis.oras.content.unpack': 'true',
        'io.deis.oras.content.digest': `sha256:${createHash('sha256').update(tar).digest('hex')}`,
        [PackAnnotation.ContentSize]: String(tar.byteLength),
        ...annotations,
      },
    },
  };
}

export const file = (name: string, body: string | Buffer = 'x'): Entry => ({
  name,
  type: 'file',
  body: Buffer.from(body),
  mode: 0o644,
});

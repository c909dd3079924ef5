import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  BlobCopier,
  type BlobSource,
  type CopyOptions,
  type CopyStats,
  type Descriptor,
  descriptorFor,
  IO_BUFFER_BYTES,
  type Target,
} from '@splintertree/oci';
import {
  type BaseVersion,
  ChunkedMediaType,
  encodeRoot,
  FORMAT_NAME,
  FormatAnnotation,
  fileSystemError,
  type PublishStats,
  packDescriptor,
  publishTree,
  rootAssociatedData,
  type TagRule,
} from '@splintertree/pack';
import { keyIdOf, seal } from '@splintertree/seal';
import { buildArtifactManifest, EMPTY_CONFIG, EMPTY_JSON, type EncodedManifest } from './artifact.js';

export interface PublishFolderOptions {
  kind: 'patch' | 'mod';
  dir: string;
  tmpRoot: string;
  annotations: Record<string, string>;
  createdAt: number | undefined;
  /** A preload: new records and the root are sealed under this key. */
  patchKey: Uint8Array | undefined;
  /** What an earlier version in the same repository holds: its chunks are not uploaded again. */
  base: BaseVersion | undefined;
  tagRules: TagRule[] | undefined;
  portable: boolean;
  /** Follow symlinks that leave the folder (`push --dereference`). */
  dereference?: boolean | undefined;
  concurrency: number;
  /** Chunking threads (see publishTree). */
  threads?: number | undefined;
  destination: Target;
  copy: Omit<CopyOptions, 'concurrency'>;
}

export interface PublishedFolder {
  manifest: EncodedManifest;
  stats: CopyStats;
  chunks: PublishStats;
}

/**
 * Chunks a folder and sends it in one pipeline: each new pack is uploaded the moment it closes, then
 * the root, then the manifest listing the root and every pack the version reads (base packs included,
 * so registry garbage collection keeps them).
 */
export async function publishFolder(options: PublishFolderOptions): Promise<PublishedFolder> {
  // A killed run's work folder is removed by the next run (leftovers.ts), by the pid in its name.
  await mkdir(options.tmpRoot, { recursive: true });
  const workDir = await mkdtemp(join(options.tmpRoot, `push-${process.pid}-`));
  const copier = new BlobCopier(options.destination, { ...options.copy, concurrency: options.concurrency });
  try {
    copier.add(EMPTY_CONFIG, bytesSource(EMPTY_JSON));
    const published = await publishTree({
      dir: options.dir,
      workDir,
      base: options.base,
      key: options.patchKey,
      tagRules: options.tagRules,
      portable: options.portable,
      dereference: options.dereference,
      threads: options.threads,
      onPack: (pack) => copier.add(packDescriptor(pack.entry), fileSource(pack.path)),
    });
    const plainRoot = encodeRoot(published.root);
    const rootBytes = options.patchKey ? seal(options.patchKey, plainRoot, rootAssociatedData()) : plainRoot;
    const root = descriptorFor(
      options.patchKey ? ChunkedMediaType.SealedRoot : ChunkedMediaType.Root,
      rootBytes,
    );
    copier.add(root, bytesSource(rootBytes));
    const layers: Descriptor[] = [root, ...published.packs.map(packDescriptor)];
    const annotations: Record<string, string> = {
      ...options.annotations,
      [FormatAnnotation.Format]: FORMAT_NAME,
    };
    if (options.patchKey) annotations[FormatAnnotation.KeyId] = keyIdOf(options.patchKey);
    if (!options.portable) annotations[FormatAnnotation.Portable] = 'false';
    const manifest = buildArtifactManifest({
      kind: options.kind,
      layers,
      annotations,
      ...(options.createdAt === undefined ? {} : { createdAt: options.createdAt }),
    });
    return { manifest, stats: await copier.finish([manifest]), chunks: published.stats };
  } catch (error) {
    copier.abandon(error);
    throw fileSystemError(error);
  } finally {
    // Uploads under way read from the work folder.
    await copier.drain().catch(() => undefined);
    await rm(workDir, { recursive: true, force: true });
  }
}

/** A pack's bytes, read 1 MiB at a time; the destination checks the digest as it stores them. */
function fileSource(path: string): BlobSource {
  return { open: async () => createReadStream(path, { highWaterMark: IO_BUFFER_BYTES }), verified: false };
}

function bytesSource(bytes: Uint8Array): BlobSource {
  return { open: async () => Readable.from([bytes]), verified: false };
}

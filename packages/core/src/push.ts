import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { SplinterError } from '@splinter/errors';
import {
  BlobCopier,
  type BlobSource,
  type CopyOptions,
  type CopyStats,
  type Descriptor,
  IO_BUFFER_BYTES,
  runLimited,
  type Target,
} from '@splinter/oci';
import { type LayerPlan, planLayers } from '@splinter/pack';
import {
  createSealStream,
  KEY_ID_ANNOTATION,
  keyIdOf,
  SEALED_LAYER_MEDIA_TYPE,
  sealFile,
} from '@splinter/seal';
import { buildArtifactManifest, EMPTY_CONFIG, EMPTY_JSON, type EncodedManifest } from './artifact.js';
import { hashFile, writeHashed } from './hashing.js';

/** Annotation on a sealed layer naming the media type of the plaintext inside (how to unpack it). */
export const SEALED_INNER_MEDIA_TYPE_ANNOTATION = 'dev.splintertree.seal.media-type';

export interface PushFolderOptions {
  kind: 'patch' | 'mod';
  dir: string;
  tmpRoot: string;
  annotations: Record<string, string>;
  createdAt: number | undefined;
  patchKey: Uint8Array | undefined;
  /** Layers packed at once, and blobs sent at once. */
  concurrency: number;
  destination: Target;
  copy: Omit<CopyOptions, 'concurrency'>;
}

export interface PushedFolder {
  manifest: EncodedManifest;
  stats: CopyStats;
}

/**
 * Packs a folder and sends it to `destination` in one pipeline: each layer is handed to the uploads the
 * moment it is packed (large files are read from where they are; groups and sealed layers go to a work
 * folder first), and the manifest goes last, once every blob is there. Nothing is held whole in memory.
 */
export async function pushFolder(options: PushFolderOptions): Promise<PushedFolder> {
  await mkdir(options.tmpRoot, { recursive: true });
  const workDir = await mkdtemp(join(options.tmpRoot, 'push-'));
  const copier = new BlobCopier(options.destination, { ...options.copy, concurrency: options.concurrency });
  try {
    copier.add(EMPTY_CONFIG, bytesSource(EMPTY_JSON));
    const plans = await planLayers(options.dir);
    const layers: Descriptor[] = new Array(plans.length);
    await runLimited(
      plans.map((plan, index) => ({ plan, index })),
      options.concurrency,
      async ({ plan, index }) => {
        const staged = await stageLayer(plan, index, workDir, options.patchKey);
        layers[index] = staged.descriptor;
        copier.add(staged.descriptor, fileSource(staged.path));
      },
    );
    const annotations = { ...options.annotations };
    if (options.patchKey) annotations[KEY_ID_ANNOTATION] = keyIdOf(options.patchKey);
    const manifest = buildArtifactManifest({
      kind: options.kind,
      layers,
      annotations,
      ...(options.createdAt === undefined ? {} : { createdAt: options.createdAt }),
    });
    return { manifest, stats: await copier.finish([manifest]) };
  } catch (error) {
    copier.abandon(error);
    throw error;
  } finally {
    // Uploads under way read from the work folder.
    await copier.drain().catch(() => undefined);
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * A packed layer's bytes, read 1 MiB at a time. Measured in the push benchmark: 64 KiB (node's default)
 * 0.95-0.96x of skopeo, 256 KiB 0.93-0.97x, 1 MiB 0.99-1.09x, for about 15 MiB more peak RSS. They were
 * hashed moments ago, while packing: the destination checks them again (the OCI layout hashes what it
 * stores, a registry checks the digest when the upload is committed), so a file changed since fails
 * the push with DIGEST_MISMATCH, or SIZE_MISMATCH when its size changed.
 */
function fileSource(path: string): BlobSource {
  return {
    open: async () => createReadStream(path, { highWaterMark: IO_BUFFER_BYTES }),
    verified: false,
  };
}

function bytesSource(bytes: Uint8Array): BlobSource {
  return { open: async () => Readable.from([bytes]), verified: false };
}

/** One layer packed: its descriptor and the file holding its bytes. */
async function stageLayer(
  plan: LayerPlan,
  index: number,
  workDir: string,
  patchKey: Uint8Array | undefined,
): Promise<{ descriptor: Descriptor; path: string }> {
  if (plan.kind === 'file' && patchKey === undefined && plan.sourcePath !== undefined) {
    const { digest, size } = await hashFile(plan.sourcePath);
    const descriptor = { mediaType: plan.mediaType, digest, size, annotations: { ...plan.annotations } };
    return { descriptor, path: plan.sourcePath };
  }
  const path = join(workDir, `layer-${index}`);
  if (plan.kind === 'file' && patchKey !== undefined && plan.sourcePath !== undefined) {
    // One pass on a worker thread: read, encipher, hash the ciphertext, write (see sealFile).
    const { digest, size } = await sealFile(plan.sourcePath, path, patchKey);
    return { descriptor: sealedLayer(plan.mediaType, digest, size, { ...plan.annotations }, patchKey), path };
  }
  const opened = plan.open();
  const stream = patchKey ? opened.stream.pipe(createSealStream(patchKey)) : opened.stream;
  if (patchKey) opened.stream.on('error', (error) => stream.destroy(error));
  const { digest, size } = await writeHashed(stream, path);
  const annotations = { ...plan.annotations, ...(await opened.extraAnnotations) };
  const descriptor = patchKey
    ? sealedLayer(plan.mediaType, digest, size, annotations, patchKey)
    : { mediaType: plan.mediaType, digest, size, annotations };
  return { descriptor, path };
}

function sealedLayer(
  innerMediaType: string,
  digest: Descriptor['digest'],
  size: number,
  annotations: Record<string, string>,
  patchKey: Uint8Array,
): Descriptor {
  return {
    mediaType: SEALED_LAYER_MEDIA_TYPE,
    digest,
    size,
    annotations: {
      ...annotations,
      [SEALED_INNER_MEDIA_TYPE_ANNOTATION]: innerMediaType,
      [KEY_ID_ANNOTATION]: keyIdOf(patchKey),
    },
  };
}

export function assertPushable(dir: string): void {
  if (dir.trim() === '') throw new SplinterError('INVALID_ARGUMENT', 'no folder to push');
}

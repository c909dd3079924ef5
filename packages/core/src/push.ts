import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SplinterError } from '@splinter/errors';
import { copyGraph, type Descriptor, EMPTY_JSON, EMPTY_JSON_DIGEST } from '@splinter/oci';
import { type LayerPlan, planLayers } from '@splinter/pack';
import {
  createSealStream,
  KEY_ID_ANNOTATION,
  keyIdOf,
  SEALED_LAYER_MEDIA_TYPE,
  sealFile,
} from '@splinter/seal';
import { buildArtifactManifest, type EncodedManifest } from './artifact.js';
import { hashFile, writeHashed } from './hashing.js';
import { StagedSource } from './staged-source.js';

/** Annotation on a sealed layer naming the media type of the plaintext inside (how to unpack it). */
export const SEALED_INNER_MEDIA_TYPE_ANNOTATION = 'dev.splintertree.seal.media-type';

export interface StagedArtifact {
  source: StagedSource;
  manifest: EncodedManifest;
  plainBytes: number;
  workDir: string;
}

export interface StageOptions {
  kind: 'patch' | 'mod';
  dir: string;
  tmpRoot: string;
  annotations: Record<string, string>;
  createdAt: number | undefined;
  patchKey: Uint8Array | undefined;
  concurrency: number;
}

/**
 * Packs a folder into layers beside it (large files are served from where they are; groups and sealed
 * layers go to a work folder), then builds the manifest. Nothing is held whole in memory.
 */
export async function stageArtifact(options: StageOptions): Promise<StagedArtifact> {
  await mkdir(options.tmpRoot, { recursive: true });
  const workDir = await mkdtemp(join(options.tmpRoot, 'push-'));
  try {
    const plans = await planLayers(options.dir);
    const source = new StagedSource();
    const layers: Descriptor[] = new Array(plans.length);
    let next = 0;
    const worker = async () => {
      while (next < plans.length) {
        const index = next++;
        layers[index] = await stageLayer(plans[index]!, index, source, workDir, options.patchKey);
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.concurrency, plans.length) }, worker));
    const annotations = { ...options.annotations };
    if (options.patchKey) annotations[KEY_ID_ANNOTATION] = keyIdOf(options.patchKey);
    const manifest = buildArtifactManifest({
      kind: options.kind,
      layers,
      annotations,
      ...(options.createdAt === undefined ? {} : { createdAt: options.createdAt }),
    });
    source.addBytes(EMPTY_JSON_DIGEST, EMPTY_JSON);
    source.addBytes(manifest.descriptor.digest, manifest.bytes);
    const plainBytes = plans.reduce((sum, plan) => sum + plan.plainSize, 0);
    return { source, manifest, plainBytes, workDir };
  } catch (error) {
    await rm(workDir, { recursive: true, force: true });
    throw error;
  }
}

async function stageLayer(
  plan: LayerPlan,
  index: number,
  source: StagedSource,
  workDir: string,
  patchKey: Uint8Array | undefined,
): Promise<Descriptor> {
  if (plan.kind === 'file' && patchKey === undefined && plan.sourcePath !== undefined) {
    const { digest, size } = await hashFile(plan.sourcePath);
    source.addFile(digest, plan.sourcePath);
    return { mediaType: plan.mediaType, digest, size, annotations: { ...plan.annotations } };
  }
  const path = join(workDir, `layer-${index}`);
  if (plan.kind === 'file' && patchKey !== undefined && plan.sourcePath !== undefined) {
    // One pass on a worker thread: read, encipher, hash the ciphertext, write (see sealFile).
    const { digest, size } = await sealFile(plan.sourcePath, path, patchKey);
    source.addFile(digest, path);
    return sealedLayer(plan.mediaType, digest, size, { ...plan.annotations }, patchKey);
  }
  const opened = plan.open();
  const stream = patchKey ? opened.stream.pipe(createSealStream(patchKey)) : opened.stream;
  if (patchKey) opened.stream.on('error', (error) => stream.destroy(error));
  const { digest, size } = await writeHashed(stream, path);
  source.addFile(digest, path);
  const annotations = { ...plan.annotations, ...(await opened.extraAnnotations) };
  if (!patchKey) return { mediaType: plan.mediaType, digest, size, annotations };
  return sealedLayer(plan.mediaType, digest, size, annotations, patchKey);
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

export { copyGraph };

export function assertPushable(dir: string): void {
  if (dir.trim() === '') throw new SplinterError('INVALID_ARGUMENT', 'no folder to push');
}

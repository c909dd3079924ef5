import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import { SplinterError } from '@splinter/errors';
import { type Descriptor, type ImageManifest, MediaType, runLimited, type Target } from '@splinter/oci';
import { finalizeTree, unpackLayer } from '@splinter/pack';
import {
  createOpenStream,
  KEY_ID_ANNOTATION,
  keyIdOf,
  SEAL_OVERHEAD,
  SEALED_LAYER_MEDIA_TYPE,
} from '@splinter/seal';
import { SEALED_INNER_MEDIA_TYPE_ANNOTATION } from './push.js';

export interface UnpackOptions {
  manifest: ImageManifest;
  content: Target;
  output: string;
  replace: boolean;
  patchKey: Uint8Array | undefined;
  /** Layers unpacked at once. */
  concurrency: number;
}

/**
 * Unpacks every content layer into a staging folder beside `output`, then renames it into place, so a
 * failed pull (hostile entry, bad tag, wrong key) leaves `output` exactly as it was.
 */
export async function unpackArtifact(options: UnpackOptions): Promise<{ files: number; bytes: number }> {
  const output = resolvePath(options.output);
  await mkdir(dirname(output), { recursive: true });
  const staging = await mkdtemp(join(dirname(output), '.splinter-staging-'));
  let files = 0;
  let bytes = 0;
  try {
    const layers = options.manifest.layers.filter((layer) => layer.mediaType !== MediaType.Empty);
    await runLimited(layers, options.concurrency, async (layer) => {
      const { descriptor, stream } = await openLayer(layer, options);
      const result = await unpackLayer(descriptor, stream, staging);
      files += result.files;
      bytes += result.bytes;
    });
    await chmod(staging, 0o755); // mkdtemp makes it 0700
    await finalizeTree(staging, output, { replace: options.replace });
    return { files, bytes };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

async function openLayer(
  layer: Descriptor,
  options: UnpackOptions,
): Promise<{ descriptor: Descriptor; stream: Readable }> {
  const fetched = await options.content.fetch(layer);
  if (layer.mediaType !== SEALED_LAYER_MEDIA_TYPE) return { descriptor: layer, stream: fetched };
  const key = options.patchKey;
  if (!key) {
    fetched.destroy();
    throw new SplinterError(
      'KEY_REQUIRED',
      `layer ${layer.digest} is encrypted (preload): pass --key-file with the patch key released by unlock`,
    );
  }
  const wanted = layer.annotations?.[KEY_ID_ANNOTATION];
  if (wanted !== undefined && wanted !== keyIdOf(key)) {
    fetched.destroy();
    throw new SplinterError(
      'DECRYPTION_FAILED',
      `the given key is ${keyIdOf(key)}, but the layer needs key ${wanted}`,
    );
  }
  const inner = layer.annotations?.[SEALED_INNER_MEDIA_TYPE_ANNOTATION];
  if (inner === undefined) {
    fetched.destroy();
    throw new SplinterError('MANIFEST_INVALID', `sealed layer ${layer.digest} does not say what it contains`);
  }
  const opened = createOpenStream(key);
  fetched.on('error', (error) => opened.destroy(error));
  const descriptor: Descriptor = { ...layer, mediaType: inner, size: layer.size - SEAL_OVERHEAD };
  return { descriptor, stream: fetched.pipe(opened) };
}

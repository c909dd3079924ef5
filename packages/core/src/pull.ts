import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
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
  /** The local cache (the embedded store): blobs it lacks are fetched from `remote` and kept there. */
  content: Target;
  remote?: Target | undefined;
  /** Bytes fetched from the remote, as they arrive. */
  onBytes?: ((bytes: number) => void) | undefined;
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
export async function unpackArtifact(
  options: UnpackOptions,
): Promise<{ files: number; bytes: number; fetched: number; cached: number; fetchedBytes: number }> {
  // Refused before any blob is fetched: a missing or wrong key should cost no download.
  for (const layer of options.manifest.layers) checkSealedLayer(layer, options.patchKey);
  const output = resolvePath(options.output);
  await mkdir(dirname(output), { recursive: true });
  const staging = await mkdtemp(join(dirname(output), '.splinter-staging-'));
  const totals = { files: 0, bytes: 0, fetched: 0, cached: 0, fetchedBytes: 0 };
  const knownFolders = new Set<string>();
  try {
    await runLimited(options.manifest.layers, options.concurrency, async (layer) => {
      const source = await openThroughCache(layer, options, totals);
      if (layer.mediaType === MediaType.Empty) {
        source.stream.resume();
        await source.stored;
        return;
      }
      try {
        const { descriptor, stream } = await openLayer(layer, source.stream, options);
        const result = await unpackLayer(descriptor, stream, staging, { knownFolders });
        totals.files += result.files;
        totals.bytes += result.bytes;
      } catch (error) {
        source.stream.destroy(error as Error);
        await source.stored.catch(() => undefined);
        throw error;
      }
      await source.stored;
    });
    await chmod(staging, 0o755); // mkdtemp makes it 0700
    await finalizeTree(staging, output, { replace: options.replace });
    return totals;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * A layer's bytes for unpacking. A blob the cache lacks is downloaded once and teed: one branch into
 * the cache (which checks the digest), one into the unpacker, whose output stays in staging until every
 * layer has verified. No second pass over the bytes.
 */
async function openThroughCache(
  layer: Descriptor,
  options: UnpackOptions,
  totals: { fetched: number; cached: number; fetchedBytes: number },
): Promise<{ stream: Readable; stored: Promise<void> }> {
  if (!options.remote || (await options.content.exists(layer))) {
    totals.cached += 1;
    return { stream: await options.content.fetch(layer), stored: Promise.resolve() };
  }
  const source = await options.remote.fetch(layer);
  const toCache = new PassThrough();
  const toUnpack = new PassThrough();
  source.on('data', (chunk: Buffer) => options.onBytes?.(chunk.byteLength));
  source.on('error', (error) => {
    toCache.destroy(error);
    toUnpack.destroy(error);
  });
  toUnpack.on('close', () => {
    if (!toUnpack.readableEnded) source.destroy(new SplinterError('INTERNAL', 'unpack stopped reading'));
  });
  source.pipe(toCache);
  source.pipe(toUnpack);
  // `source` is the remote's digest-checked stream: it errors before ending if the bytes are wrong.
  const stored = options.content.push(layer, toCache, { verifiedUpstream: true });
  stored.catch((error: Error) => toUnpack.destroy(error));
  totals.fetched += 1;
  totals.fetchedBytes += layer.size;
  return { stream: toUnpack, stored };
}

async function openLayer(
  layer: Descriptor,
  fetched: Readable,
  options: UnpackOptions,
): Promise<{ descriptor: Descriptor; stream: Readable }> {
  if (layer.mediaType !== SEALED_LAYER_MEDIA_TYPE) return { descriptor: layer, stream: fetched };
  const { key, inner } = checkSealedLayer(layer, options.patchKey)!;
  const opened = createOpenStream(key);
  fetched.on('error', (error) => opened.destroy(error));
  const descriptor: Descriptor = { ...layer, mediaType: inner, size: layer.size - SEAL_OVERHEAD };
  return { descriptor, stream: fetched.pipe(opened) };
}

/** For a sealed layer: the key it needs is given and the layer says what it holds; else a one-line error. */
function checkSealedLayer(
  layer: Descriptor,
  key: Uint8Array | undefined,
): { key: Uint8Array; inner: string } | undefined {
  if (layer.mediaType !== SEALED_LAYER_MEDIA_TYPE) return undefined;
  if (!key) {
    throw new SplinterError(
      'KEY_REQUIRED',
      `layer ${layer.digest} is encrypted (preload): pass --key-file with the patch key released by unlock`,
    );
  }
  const wanted = layer.annotations?.[KEY_ID_ANNOTATION];
  if (wanted !== undefined && wanted !== keyIdOf(key)) {
    throw new SplinterError(
      'DECRYPTION_FAILED',
      `the given key is ${keyIdOf(key)}, but the layer needs key ${wanted}`,
    );
  }
  const inner = layer.annotations?.[SEALED_INNER_MEDIA_TYPE_ANNOTATION];
  if (inner === undefined) {
    throw new SplinterError('MANIFEST_INVALID', `sealed layer ${layer.digest} does not say what it contains`);
  }
  return { key, inner };
}

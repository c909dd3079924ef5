import { chmod, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { SplinterError } from '@splinter/errors';
import {
  Annotation,
  type Descriptor,
  type ImageManifest,
  IO_BUFFER_BYTES,
  MediaType,
  type OciLayoutTarget,
  runLimited,
  type Target,
} from '@splinter/oci';
import {
  finalizeTree,
  isFileLayer,
  placeFileLayer,
  safeRelativePath,
  type UnpackLimits,
  type UnpackResult,
  unpackLayer,
  writeFileLayer,
} from '@splinter/pack';
import {
  createOpenStream,
  KEY_ID_ANNOTATION,
  keyIdOf,
  openSealedFile,
  SEAL_OVERHEAD,
  SEALED_LAYER_MEDIA_TYPE,
} from '@splinter/seal';
import { SEALED_INNER_MEDIA_TYPE_ANNOTATION } from './push.js';

export interface UnpackOptions {
  manifest: ImageManifest;
  /** The local cache (the embedded store): blobs it lacks are fetched from `remote` and kept there. */
  content: OciLayoutTarget;
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
  const totals: Totals = { files: 0, bytes: 0, fetched: 0, cached: 0, fetchedBytes: 0 };
  const tree: TreeInProgress = {
    staging,
    output,
    limits: { knownFolders: new Set() },
    linked: new Set(),
    placing: new Map(),
  };
  try {
    await runLimited(options.manifest.layers, options.concurrency, async (layer) => {
      // Layers with the same bytes go one after another, so the second finds the first's blob.
      const previous = tree.placing.get(layer.digest) ?? Promise.resolve();
      const placed = previous.catch(() => undefined).then(() => placeLayer(layer, options, totals, tree));
      tree.placing.set(layer.digest, placed);
      const result = await placed;
      totals.files += result.files;
      totals.bytes += result.bytes;
    });
    await chmod(staging, 0o755); // mkdtemp makes it 0700
    await finalizeTree(staging, output, { replace: options.replace });
    return totals;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

type Totals = { files: number; bytes: number; fetched: number; cached: number; fetchedBytes: number };

interface TreeInProgress {
  staging: string;
  /** Where the tree goes: a tree already there is the one this pull replaces. */
  output: string;
  limits: UnpackLimits;
  /** Digests hard-linked into this tree: a second file with the same bytes gets a copy of its own. */
  linked: Set<string>;
  /** The latest layer placed per digest. */
  placing: Map<string, Promise<UnpackResult>>;
}

/**
 * One layer into the staging tree. A file layer downloaded now is written once, into the cache, and
 * hard-linked into the tree: for a game that is most of its bytes, and the cache then costs no disk
 * for installed files. A cached file layer that is linked into a tree may have been edited there in
 * place, so it is re-hashed before use and downloaded afresh if it no longer matches. Everything else
 * streams through the cache into the unpacker.
 */
async function placeLayer(
  layer: Descriptor,
  options: UnpackOptions,
  totals: Totals,
  tree: TreeInProgress,
): Promise<UnpackResult> {
  const cache = options.content;
  const linkable =
    options.remote !== undefined && layer.mediaType !== SEALED_LAYER_MEDIA_TYPE && isFileLayer(layer);
  if (linkable && (await cache.isShared(layer))) {
    const reused = await reuseSharedBlob(layer, cache, tree);
    if (reused) {
      totals.cached += 1;
      return reused;
    }
  }
  const sealedFile = sealedFileLayer(layer, options.patchKey);
  if (sealedFile) return placeSealedFileLayer(layer, sealedFile, options, totals, tree);
  const cached = !options.remote || (await cache.exists(layer));
  if (linkable && !cached) {
    tree.linked.add(layer.digest);
    await cache.push(layer, await fetchCounted(layer, options, totals), { verifiedUpstream: true });
    return placeFileLayer(layer, cache.blobFile(layer), tree.staging, 'link', tree.limits);
  }
  const source = await openThroughCache(layer, cached, options, totals);
  if (layer.mediaType === MediaType.Empty) {
    source.stream.resume();
    await source.stored;
    return { files: 0, bytes: 0 };
  }
  try {
    const { descriptor, stream } = await openLayer(layer, source.stream, options);
    const result = await unpackLayer(descriptor, stream, tree.staging, tree.limits);
    await source.stored;
    return result;
  } catch (error) {
    source.stream.destroy(error as Error);
    await source.stored.catch(() => undefined);
    throw error;
  }
}

/**
 * A cached file layer that a tree shares, if its bytes still hash to its digest: linked again when
 * the other link is the tree this pull replaces (an update then writes nothing for unchanged files),
 * else copied. A blob edited through a tree is dropped from the cache, and undefined sends the caller
 * to download it.
 */
async function reuseSharedBlob(
  layer: Descriptor,
  cache: OciLayoutTarget,
  tree: TreeInProgress,
): Promise<UnpackResult | undefined> {
  const blobFile = cache.blobFile(layer);
  if (tree.linked.has(layer.digest))
    return placeFileLayer(layer, blobFile, tree.staging, 'copy', tree.limits);
  try {
    await finished((await cache.fetch(layer)).resume());
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== 'DIGEST_MISMATCH' && code !== 'SIZE_MISMATCH' && code !== 'BLOB_UNKNOWN') throw error;
    await cache.discard(layer);
    return undefined;
  }
  const installed = join(tree.output, safeRelativePath(layer.annotations![Annotation.Title]!, 'layer title'));
  const [blob, current] = await Promise.all([stat(blobFile), stat(installed).catch(() => undefined)]);
  if (current?.ino === blob.ino && current.dev === blob.dev) {
    tree.linked.add(layer.digest);
    return placeFileLayer(layer, blobFile, tree.staging, 'link', tree.limits);
  }
  return placeFileLayer(layer, blobFile, tree.staging, 'copy', tree.limits);
}

/**
 * A sealed layer that holds one file: its ciphertext goes into the cache (if it is not there from a
 * prefetch), then the whole file is decrypted from the cache into the staging tree on a worker thread
 * (`openSealedFile`), hashing a cached blob in the same pass. This is the launcher's moment of release,
 * when every staged preload is opened at once: no JavaScript touches the bytes, so layers decrypt on
 * both cores and the main thread stays free.
 */
async function placeSealedFileLayer(
  layer: Descriptor,
  sealed: { key: Uint8Array; inner: Descriptor },
  options: UnpackOptions,
  totals: Totals,
  tree: TreeInProgress,
): Promise<UnpackResult> {
  const cache = options.content;
  const cached = await cache.exists(layer);
  if (cached) totals.cached += 1;
  else if (options.remote) {
    await cache.push(layer, await fetchCounted(layer, options, totals), { verifiedUpstream: true });
  } else throw new SplinterError('BLOB_UNKNOWN', `blob ${layer.digest} is not in ${cache.location}`);
  // A blob verified on its way in moments ago is not hashed again; one from an earlier pull is.
  const expected = cached ? { digest: layer.digest, size: layer.size } : undefined;
  return writeFileLayer(
    sealed.inner,
    tree.staging,
    (target) => openSealedFile(cache.blobFile(layer), target, sealed.key, expected ? { expected } : {}),
    tree.limits,
  );
}

/** A sealed layer whose plaintext is one file, with its key and plaintext descriptor; else undefined. */
function sealedFileLayer(
  layer: Descriptor,
  key: Uint8Array | undefined,
): { key: Uint8Array; inner: Descriptor } | undefined {
  const sealed = checkSealedLayer(layer, key);
  if (!sealed) return undefined;
  const inner = innerDescriptor(layer, sealed.inner);
  return isFileLayer(inner) ? { key: sealed.key, inner } : undefined;
}

function innerDescriptor(layer: Descriptor, mediaType: string): Descriptor {
  return { ...layer, mediaType, size: layer.size - SEAL_OVERHEAD };
}

async function fetchCounted(layer: Descriptor, options: UnpackOptions, totals: Totals): Promise<Readable> {
  const source = await options.remote!.fetch(layer);
  if (options.onBytes) source.on('data', (chunk: Buffer) => options.onBytes?.(chunk.byteLength));
  totals.fetched += 1;
  totals.fetchedBytes += layer.size;
  return source;
}

/**
 * A layer's bytes for unpacking. A blob the cache lacks is downloaded once and teed: one branch into
 * the cache (which checks the digest), one into the unpacker, whose output stays in staging until every
 * layer has verified. No second pass over the bytes.
 */
async function openThroughCache(
  layer: Descriptor,
  cached: boolean,
  options: UnpackOptions,
  totals: Totals,
): Promise<{ stream: Readable; stored: Promise<void> }> {
  if (cached) {
    totals.cached += 1;
    return { stream: await options.content.fetch(layer), stored: Promise.resolve() };
  }
  const source = await fetchCounted(layer, options, totals);
  // Each branch may run up to a write buffer ahead of the other before the download waits for it.
  const toCache = new PassThrough({ highWaterMark: IO_BUFFER_BYTES });
  const toUnpack = new PassThrough({ highWaterMark: IO_BUFFER_BYTES });
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
  return { descriptor: innerDescriptor(layer, inner), stream: fetched.pipe(opened) };
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

import { constants, createWriteStream } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SplinterError } from '@splinter/errors';
import { Annotation, type Descriptor, IO_BUFFER_BYTES, MediaType } from '@splinter/oci';
import { PackAnnotation } from './annotations.js';
import { startGroupJob } from './group-pool.js';
import type { UnpackResult } from './group-unpack.js';
import { layerTooLarge, prepareParent, refuseSecondWrite, safeRelativePath } from './paths.js';

export interface UnpackLimits {
  /** Without a declared size, a group may expand to at most this many times its compressed size. */
  maxExpansionRatio?: number;
  /**
   * Folders under staging already checked to be real folders. Pass one Set to every file layer of an
   * artifact: it saves an lstat per path component per file (nothing can later turn a folder we made
   * into a symlink: symlink() refuses an existing path). Groups keep their own, on their worker thread.
   */
  knownFolders?: Set<string>;
}

const DEFAULT_EXPANSION_RATIO = 1024;
/** link() errors that mean "no hard link here" (another file system, or one without links): copy. */
const LINK_REFUSED = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP']);

/**
 * Writes one layer into `staging`. Everything lands under `staging`: paths with `..`, absolute paths,
 * links that escape, writes through links, devices and layers larger than declared are refused with a
 * one-line error. The caller owns `staging` and deletes it on failure; it may do so as soon as this
 * settles, as nothing more is written then.
 *
 * A tar+gzip group is unpacked on a worker thread (group-pool.ts) with synchronous file-system calls:
 * on a 2-core VM the promise API's three thread-pool hand-offs per small file cost the main thread
 * more than the kernel's work, and the main thread is needed for hashing and HTTP. The compressed bytes
 * go through a 1 MiB ring shared with the worker, so a group holds that much memory whatever its size.
 */
export async function unpackLayer(
  desc: Descriptor,
  content: Readable,
  staging: string,
  limits: UnpackLimits = {},
): Promise<UnpackResult> {
  const title = desc.annotations?.[Annotation.Title];
  if (title === undefined) {
    content.resume(); // untitled layers (e.g. the empty config) carry no files, as with `oras pull`
    return { files: 0, bytes: 0 };
  }
  const safeTitle = safeRelativePath(title, 'layer title');
  if (isGroupLayer(desc)) return unpackGroup(desc, safeTitle, content, staging, limits);
  const target = prepareParent(staging, safeTitle, limits.knownFolders ?? new Set());
  return { files: 1, bytes: await writeNewFile(desc, content, target, safeTitle) };
}

/** A layer whose bytes are one file of the tree (ORAS's file convention), not a tar+gzip group. */
export function isFileLayer(desc: Descriptor): boolean {
  return desc.annotations?.[Annotation.Title] !== undefined && !isGroupLayer(desc);
}

function isGroupLayer(desc: Descriptor): boolean {
  return (
    desc.mediaType === MediaType.LayerTarGzip && desc.annotations?.[Annotation.OrasContentUnpack] === 'true'
  );
}

function fileLayerMode(desc: Descriptor): number {
  return desc.annotations?.[PackAnnotation.FileMode] === '0755' ? 0o755 : 0o644;
}

/**
 * Puts a file layer whose verified bytes are already in `blobFile` into `staging`. `link` makes a hard
 * link, so the bytes are written once for the cache and the tree together; the link shares the inode,
 * so its mode becomes the file's. Across file systems (or where links are refused), and with `copy`,
 * the file gets its own inode: a reflink where the file system can, else a copy. Same path rules and
 * errors as unpackLayer.
 */
export async function placeFileLayer(
  desc: Descriptor,
  blobFile: string,
  staging: string,
  how: 'link' | 'copy',
  limits: UnpackLimits = {},
): Promise<UnpackResult> {
  return writeFileLayer(
    desc,
    staging,
    async (target) => {
      if (how === 'link') {
        const linked = await link(blobFile, target).then(
          () => true,
          (error: NodeJS.ErrnoException) => {
            if (!LINK_REFUSED.has(error.code ?? '')) throw error;
            return false;
          },
        );
        if (linked) return;
      }
      await copyFile(blobFile, target, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    },
    limits,
  );
}

/**
 * Puts a file layer into `staging` through `write`, which must create `target` exclusively (it fails
 * with EEXIST when something is there) with the layer's bytes; its mode is then set from the layer
 * (link, copy and writer alike).
 * Same path rules and errors as unpackLayer. For bytes that are not the blob's own (a sealed layer's
 * plaintext, which core decrypts from the cache straight into `target`).
 */
export async function writeFileLayer(
  desc: Descriptor,
  staging: string,
  write: (target: string) => Promise<unknown>,
  limits: UnpackLimits = {},
): Promise<UnpackResult> {
  if (!isFileLayer(desc)) throw new SplinterError('INTERNAL', `layer ${desc.digest} is not a file layer`);
  const safeTitle = safeRelativePath(desc.annotations![Annotation.Title]!, 'layer title');
  const target = prepareParent(staging, safeTitle, limits.knownFolders ?? new Set());
  await write(target).catch((error: NodeJS.ErrnoException) => refuseSecondWrite(error, safeTitle));
  await chmod(target, fileLayerMode(desc));
  return { files: 1, bytes: desc.size };
}

async function unpackGroup(
  desc: Descriptor,
  title: string,
  content: Readable,
  staging: string,
  limits: UnpackLimits,
): Promise<UnpackResult> {
  const declared = Number(desc.annotations?.[PackAnnotation.ContentSize]);
  const job = startGroupJob({
    digest: desc.digest,
    title,
    staging,
    maxTarBytes:
      Number.isSafeInteger(declared) && declared >= 0
        ? declared
        : desc.size * (limits.maxExpansionRatio ?? DEFAULT_EXPANSION_RATIO),
    tarDigest: desc.annotations?.[Annotation.OrasContentDigest],
  });
  try {
    for await (const chunk of content as AsyncIterable<Buffer>) await job.write(chunk);
  } catch (error) {
    await job.abort();
    throw error;
  }
  return job.end();
}

/**
 * Streams a file layer into `target`, which must not exist yet (two layers for one path are refused),
 * refusing more bytes than the descriptor declares.
 */
async function writeNewFile(
  desc: Descriptor,
  content: Readable,
  target: string,
  path: string,
): Promise<number> {
  let written = 0;
  await pipeline(
    content,
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        written += chunk.byteLength;
        if (written > desc.size) return callback(layerTooLarge(desc.digest, 'bytes'));
        callback(null, chunk);
      },
    }),
    createWriteStream(target, { flags: 'wx', mode: fileLayerMode(desc), highWaterMark: IO_BUFFER_BYTES }),
  ).catch((error: NodeJS.ErrnoException) => refuseSecondWrite(error, path));
  return written;
}

export interface FinalizeOptions {
  /** Replace an existing non-empty output (moved aside, then deleted once the new tree is in place). */
  replace?: boolean;
}

/** Moves a fully unpacked staging folder to `output` with renames, so readers never see a partial tree. */
export async function finalizeTree(
  staging: string,
  output: string,
  options: FinalizeOptions = {},
): Promise<void> {
  const existing = await lstat(output).catch(() => undefined);
  if (!existing) {
    await mkdir(dirname(output), { recursive: true });
    await rename(staging, output);
    return;
  }
  if (existing.isDirectory() && (await readdir(output)).length === 0) {
    await rmdir(output);
    await rename(staging, output);
    return;
  }
  if (!options.replace) {
    throw new SplinterError(
      'OUTPUT_EXISTS',
      `${output} already exists and is not empty (pass --replace to replace it)`,
    );
  }
  const aside = `${output}.splinter-old-${process.pid}-${Date.now()}`;
  await rename(output, aside);
  try {
    await rename(staging, output);
  } catch (error) {
    await rename(aside, output);
    throw error;
  }
  await rm(aside, { recursive: true, force: true });
}

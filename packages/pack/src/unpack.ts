import { createHash } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  readdir,
  rename,
  rm,
  rmdir,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { SplinterError } from '@splinter/errors';
import { Annotation, type Descriptor, IO_BUFFER_BYTES, MediaType } from '@splinter/oci';
import { type Header as Headers, extract as tarExtract } from 'tar-stream';
import { PackAnnotation } from './annotations.js';
import { assertLinkInside } from './walk.js';

export interface UnpackLimits {
  /** Without a declared size, a group may expand to at most this many times its compressed size. */
  maxExpansionRatio?: number;
  /**
   * Folders under staging already checked to be real folders. Pass one Set to every layer of an
   * artifact: it saves an lstat per path component per file (nothing can later turn a folder we made
   * into a symlink: symlink() refuses an existing path).
   */
  knownFolders?: Set<string>;
}

export interface UnpackResult {
  files: number;
  bytes: number;
}

const DEFAULT_EXPANSION_RATIO = 1024;
/**
 * Tar entries up to this size are gathered and written with one call: a stream pipeline per file
 * (abort controller, end-of-stream listeners, a write stream) cost more than the write itself for the
 * thousands of small files a game ships.
 */
const SMALL_ENTRY_BYTES = 256 * 1024;
/**
 * Inflated bytes per zlib round trip. Each chunk is one hand-off to libuv's thread pool and one callback
 * back into JavaScript; at zlib's 16 KiB default a profile of a pull on a 2-core VM put about 0.5 s of
 * main-thread time per 100 MiB of groups in those hand-offs and callbacks.
 */
const GUNZIP_CHUNK_BYTES = 256 * 1024;
/** link() errors that mean "no hard link here" (another file system, or one without links): copy. */
const LINK_REFUSED = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP']);

/**
 * Writes one layer into `staging`. Everything lands under `staging`: paths with `..`, absolute paths,
 * links that escape, writes through links, devices and layers larger than declared are refused with a
 * one-line error. The caller owns `staging` and deletes it on failure.
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
  const bytes = await writeNewFile(
    await prepareParent(staging, safeTitle, limits.knownFolders),
    content,
    fileLayerMode(desc),
    safeTitle,
    desc.size,
    () => tooLarge(desc, 'bytes'),
  );
  return { files: 1, bytes };
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
  const target = await prepareParent(staging, safeTitle, limits.knownFolders);
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
  const bound =
    Number.isSafeInteger(declared) && declared >= 0
      ? declared
      : desc.size * (limits.maxExpansionRatio ?? DEFAULT_EXPANSION_RATIO);
  const expectedTarDigest = desc.annotations?.[Annotation.OrasContentDigest];
  const tarHash = createHash('sha256');
  let tarBytes = 0;
  let files = 0;
  let bytes = 0;
  const counting = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      tarBytes += chunk.byteLength;
      if (tarBytes > bound) return callback(tooLarge(desc, 'uncompressed bytes'));
      tarHash.update(chunk);
      callback(null, chunk);
    },
  });
  const extract = tarExtract();
  extract.on('entry', (header, stream, next) => {
    writeEntry(header, stream as unknown as Readable, title, staging, limits.knownFolders)
      .then((written) => {
        if (written !== undefined) {
          files += 1;
          bytes += written;
        }
        next();
      })
      .catch((error: unknown) => {
        stream.resume();
        next(error as Error);
      });
  });
  const gunzip = createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES });
  try {
    await pipeline(content, gunzip, counting, extract);
  } catch (error) {
    if (error instanceof SplinterError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code.startsWith('Z_') || /tar|header|gzip|unexpected end/i.test((error as Error).message)) {
      throw new SplinterError(
        'ARCHIVE_INVALID',
        `layer ${desc.digest}: corrupt archive (${(error as Error).message})`,
        { cause: error },
      );
    }
    throw error;
  }
  if (expectedTarDigest !== undefined) {
    const actual = `sha256:${tarHash.digest('hex')}`;
    if (actual !== expectedTarDigest) {
      throw new SplinterError(
        'DIGEST_MISMATCH',
        `layer ${desc.digest}: tar content is ${actual}, annotation says ${expectedTarDigest}`,
      );
    }
  }
  return { files, bytes };
}

/** Writes one tar entry; returns the bytes of a regular file, undefined for other entries. */
async function writeEntry(
  header: Headers,
  stream: Readable,
  title: string,
  staging: string,
  knownFolders: Set<string> | undefined,
): Promise<number | undefined> {
  const name = header.name.replace(/\/+$/, '');
  if (name === title) {
    if (header.type !== 'directory')
      throw new SplinterError('UNSAFE_PATH', `${name}: the group root must be a folder`);
    stream.resume();
    return undefined;
  }
  if (!name.startsWith(`${title}/`)) {
    throw new SplinterError(
      'UNSAFE_PATH',
      `${JSON.stringify(header.name)} is outside the layer's folder ${title}/`,
    );
  }
  const relative = safeRelativePath(name.slice(title.length + 1), 'tar entry');
  switch (header.type) {
    case 'directory': {
      stream.resume();
      const target = await prepareParent(staging, relative, knownFolders);
      await mkdir(target, { mode: 0o755 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
      const info = await lstat(target);
      if (!info.isDirectory())
        throw new SplinterError('UNSAFE_LINK', `${relative}: a folder entry over a non-folder`);
      return undefined;
    }
    case 'file':
    case 'contiguous-file': {
      const mode = (header.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
      const target = await prepareParent(staging, relative, knownFolders);
      if ((header.size ?? 0) <= SMALL_ENTRY_BYTES)
        return writeSmallFile(target, await gather(stream, SMALL_ENTRY_BYTES, relative), mode, relative);
      return writeNewFile(target, stream, mode, relative);
    }
    case 'symlink': {
      stream.resume();
      const linkTarget = header.linkname ?? '';
      assertLinkInside(relative, linkTarget);
      await symlink(linkTarget, await prepareParent(staging, relative, knownFolders));
      return undefined;
    }
    case 'link': {
      stream.resume();
      const source = safeRelativePath(
        (header.linkname ?? '').replace(new RegExp(`^${escapeRegExp(title)}/`), ''),
        'hard link',
      );
      const sourcePath = join(staging, source);
      const info = await lstat(sourcePath).catch(() => undefined);
      if (!info?.isFile())
        throw new SplinterError(
          'UNSAFE_LINK',
          `${relative}: hard link to ${source}, which is not a file in this tree`,
        );
      await assertNoLinkOnPath(staging, source);
      await link(sourcePath, await prepareParent(staging, relative, knownFolders));
      return 0;
    }
    default:
      throw new SplinterError(
        'UNSUPPORTED_ENTRY',
        `${relative}: ${header.type} entries are not allowed in a patch`,
      );
  }
}

/**
 * Streams into a file that must not exist yet (two entries for one path are refused), counting bytes
 * and refusing more than `limit`.
 */
async function writeNewFile(
  target: string,
  content: Readable,
  mode: number,
  path: string,
  limit = Number.POSITIVE_INFINITY,
  overLimit: () => Error = () => new SplinterError('LAYER_TOO_LARGE', `${path}: more bytes than declared`),
): Promise<number> {
  let written = 0;
  await pipeline(
    content,
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        written += chunk.byteLength;
        if (written > limit) return callback(overLimit());
        callback(null, chunk);
      },
    }),
    createWriteStream(target, { flags: 'wx', mode, highWaterMark: IO_BUFFER_BYTES }),
  ).catch((error: NodeJS.ErrnoException) => refuseSecondWrite(error, path));
  return written;
}

/** writeNewFile for bytes already in memory. */
async function writeSmallFile(target: string, data: Buffer, mode: number, path: string): Promise<number> {
  await writeFile(target, data, { flag: 'wx', mode }).catch((error: NodeJS.ErrnoException) =>
    refuseSecondWrite(error, path),
  );
  return data.byteLength;
}

function refuseSecondWrite(error: NodeJS.ErrnoException, path: string): never {
  if (error.code === 'EEXIST') throw new SplinterError('UNSAFE_PATH', `${path}: written twice`);
  throw error;
}

/** An entry's bytes, refusing more than `limit` (tar-stream yields exactly the header's size). */
async function gather(content: Readable, limit: number, path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of content as AsyncIterable<Buffer>) {
    length += chunk.byteLength;
    if (length > limit) throw new SplinterError('LAYER_TOO_LARGE', `${path}: more bytes than declared`);
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
}

/**
 * A layer-supplied path must be relative, free of `..`, empty and `.` components and NUL, so that
 * joined to the staging folder it stays inside it.
 */
export function safeRelativePath(path: string, what: string): string {
  if (path === '' || path.includes('\0') || path.includes('\\')) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} is not a safe relative path`);
  }
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} is an absolute path`);
  }
  const parts = path.split('/');
  if (parts.some((part) => part === '..')) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} climbs out with '..'`);
  }
  if (parts.some((part) => part === '' || part === '.')) {
    throw new SplinterError('UNSAFE_PATH', `${what} ${JSON.stringify(path)} has empty or '.' components`);
  }
  return posix.normalize(path);
}

/** Creates the parent folders of `relative` under `staging`, refusing to pass through any symlink. */
async function prepareParent(staging: string, relative: string, knownFolders?: Set<string>): Promise<string> {
  const parts = relative.split('/');
  let current = staging;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    if (knownFolders?.has(current)) continue;
    let info = await lstat(current).catch(() => undefined);
    if (!info) {
      // Layers unpack in parallel: another one may create the same folder at the same moment.
      await mkdir(current, { mode: 0o755 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
      info = await lstat(current);
    }
    if (info.isSymbolicLink()) {
      throw new SplinterError(
        'UNSAFE_LINK',
        `${relative}: would be written through the symlink ${posix.join(...parts.slice(0, parts.indexOf(part) + 1))}`,
      );
    } else if (!info.isDirectory()) {
      throw new SplinterError('UNSAFE_PATH', `${relative}: a parent is not a folder`);
    }
    knownFolders?.add(current);
  }
  return join(staging, relative);
}

async function assertNoLinkOnPath(staging: string, relative: string): Promise<void> {
  let current = staging;
  for (const part of relative.split('/')) {
    current = join(current, part);
    if ((await lstat(current)).isSymbolicLink())
      throw new SplinterError('UNSAFE_LINK', `${relative}: path goes through a symlink`);
  }
}

function tooLarge(desc: Descriptor, what: string): SplinterError {
  return new SplinterError(
    'LAYER_TOO_LARGE',
    `layer ${desc.digest} expands beyond the ${what} its manifest declares`,
  );
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
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

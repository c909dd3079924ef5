import { createHash } from 'node:crypto';
import { closeSync, linkSync, lstatSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, type Gunzip } from 'node:zlib';
import { SplinterError } from '@splinter/errors';
import { type Header, extract as tarExtract } from 'tar-stream';
import {
  assertNoLinkOnPath,
  layerTooLarge,
  prepareParent,
  refuseSecondWrite,
  safeRelativePath,
} from './paths.js';
import { assertLinkInside } from './walk.js';

/** One tar+gzip group to unpack: everything but its bytes, which arrive through `write`. */
export interface GroupSpec {
  /** The layer's digest, for messages. */
  digest: string;
  /** The folder every entry must be under: the layer title, already checked to be a safe path. */
  title: string;
  staging: string;
  /** Most tar bytes the group may expand to. */
  maxTarBytes: number;
  /** The digest of the tar stream (ORAS's content digest annotation), when the layer has one. */
  tarDigest?: string | undefined;
}

export interface UnpackResult {
  files: number;
  bytes: number;
}

/**
 * Inflated bytes per zlib round trip. Each chunk is one hand-off to libuv's thread pool and one callback
 * back into JavaScript; at zlib's 16 KiB default a profile of a pull on a 2-core VM put about 0.5 s of
 * thread time per 100 MiB of groups in those hand-offs and callbacks.
 */
const GUNZIP_CHUNK_BYTES = 256 * 1024;

/**
 * Unpacks one group into `spec.staging` with synchronous file-system calls. It is meant for the group
 * worker thread (see group-pool.ts), where blocking is the point: each small file costs its open, write
 * and close in the kernel and nothing more, where the promise API costs three thread-pool hand-offs.
 * Entries are refused as unpackLayer documents; a refusal stops the group before anything more is
 * written.
 */
export class GroupUnpack {
  /** Settles once every entry is written and the tar digest checked, or with the first error. */
  readonly result: Promise<UnpackResult>;
  private readonly gunzip: Gunzip = createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES });
  private readonly knownFolders = new Set<string>();
  private stopped = false;

  constructor(private readonly spec: GroupSpec) {
    const tarHash = createHash('sha256');
    let tarBytes = 0;
    const counting = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        tarBytes += chunk.byteLength;
        if (tarBytes > spec.maxTarBytes) return callback(layerTooLarge(spec.digest, 'uncompressed bytes'));
        tarHash.update(chunk);
        callback(null, chunk);
      },
    });
    const totals: UnpackResult = { files: 0, bytes: 0 };
    const extract = tarExtract();
    extract.on('entry', (header, stream, next) =>
      this.onEntry(header, stream as unknown as Readable, totals, next),
    );
    this.result = pipeline(this.gunzip, counting, extract).then(
      () => {
        const actual = `sha256:${tarHash.digest('hex')}`;
        if (spec.tarDigest !== undefined && actual !== spec.tarDigest) {
          throw new SplinterError(
            'DIGEST_MISMATCH',
            `layer ${spec.digest}: tar content is ${actual}, annotation says ${spec.tarDigest}`,
          );
        }
        return totals;
      },
      (error: unknown) => {
        throw archiveError(spec.digest, error);
      },
    );
  }

  /** Feeds compressed bytes; `callback` runs once zlib has taken them in. */
  write(chunk: Uint8Array, callback: () => void): void {
    this.gunzip.write(chunk, callback);
  }

  end(): void {
    this.gunzip.end();
  }

  /** Stops at once: no file-system call for this group runs after abort returns. */
  abort(): void {
    this.stopped = true;
    this.result.catch(() => undefined);
    this.gunzip.destroy();
  }

  private onEntry(
    header: Header,
    stream: Readable,
    totals: UnpackResult,
    next: (error?: Error) => void,
  ): void {
    let fd: number | undefined;
    let settled = false;
    const settle = (error?: Error) => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      if (settled) return;
      settled = true;
      next(error);
    };
    // Listeners first: a refusal destroys the entry stream along with the extractor, with the error.
    stream.on('error', (error: Error) => settle(error));
    stream.on('close', () => settle());
    stream.on('end', () => settle());
    try {
      if (this.stopped) throw new SplinterError('INTERNAL', `layer ${this.spec.digest}: unpack aborted`);
      const file = this.placeEntry(header);
      if (file) {
        fd = file.fd;
        totals.files += 1;
        totals.bytes += header.size ?? 0;
        stream.on('data', (chunk: Buffer) => {
          if (settled || this.stopped) return;
          try {
            writeAll(file.fd, chunk);
          } catch (error) {
            settle(error as Error);
          }
        });
      } else if (header.type === 'link') totals.files += 1;
    } catch (error) {
      settle(error as Error);
    }
    stream.resume();
  }

  /** Checks an entry and creates what it names; for a regular file, returns its open descriptor. */
  private placeEntry(header: Header): { fd: number } | undefined {
    const { title, staging } = this.spec;
    const name = header.name.replace(/\/+$/, '');
    if (name === title) {
      if (header.type !== 'directory')
        throw new SplinterError('UNSAFE_PATH', `${name}: the group root must be a folder`);
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
        const target = prepareParent(staging, relative, this.knownFolders);
        try {
          mkdirSync(target, { mode: 0o755 });
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        }
        if (!lstatSync(target).isDirectory())
          throw new SplinterError('UNSAFE_LINK', `${relative}: a folder entry over a non-folder`);
        return undefined;
      }
      case 'file':
      case 'contiguous-file': {
        const mode = (header.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
        const target = prepareParent(staging, relative, this.knownFolders);
        try {
          return { fd: openSync(target, 'wx', mode) };
        } catch (error) {
          return refuseSecondWrite(error as NodeJS.ErrnoException, relative);
        }
      }
      case 'symlink': {
        const linkTarget = header.linkname ?? '';
        assertLinkInside(relative, linkTarget);
        symlinkSync(linkTarget, prepareParent(staging, relative, this.knownFolders));
        return undefined;
      }
      case 'link': {
        const linkName = header.linkname ?? '';
        const source = safeRelativePath(
          linkName.startsWith(`${title}/`) ? linkName.slice(title.length + 1) : linkName,
          'hard link',
        );
        const sourcePath = join(staging, source);
        if (!lstatSync(sourcePath, { throwIfNoEntry: false })?.isFile())
          throw new SplinterError(
            'UNSAFE_LINK',
            `${relative}: hard link to ${source}, which is not a file in this tree`,
          );
        assertNoLinkOnPath(staging, source);
        linkSync(sourcePath, prepareParent(staging, relative, this.knownFolders));
        return undefined;
      }
      default:
        throw new SplinterError(
          'UNSUPPORTED_ENTRY',
          `${relative}: ${header.type} entries are not allowed in a patch`,
        );
    }
  }
}

function writeAll(fd: number, chunk: Buffer): void {
  for (let offset = 0; offset < chunk.byteLength; )
    offset += writeSync(fd, chunk, offset, chunk.byteLength - offset);
}

/** zlib and tar-stream failures become ARCHIVE_INVALID; refusals and system errors pass as they are. */
function archiveError(digest: string, error: unknown): unknown {
  if (error instanceof SplinterError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (code.startsWith('Z_') || /tar|header|gzip|unexpected end/i.test((error as Error).message)) {
    return new SplinterError(
      'ARCHIVE_INVALID',
      `layer ${digest}: corrupt archive (${(error as Error).message})`,
      {
        cause: error,
      },
    );
  }
  return error;
}

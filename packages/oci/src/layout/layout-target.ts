import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { SplinterError } from '@splintertree/errors';
import {
  blobUnknown,
  checkRange,
  contentCheck,
  progressStream,
  readVerified,
  sizeLimit,
  toReadable,
} from '../content.js';
import { type Descriptor, type ImageIndex, isManifestMediaType } from '../descriptor.js';
import { digestHex, isDigest, VerifyingStream } from '../digest.js';
import { parseManifest } from '../graph.js';
import { Annotation, MAX_MANIFEST_BYTES, MediaType } from '../media-types.js';
import type { PrivateCopyable, PushOptions, RangeRead, RangeReadable, Target } from '../target.js';

const LAYOUT_VERSION = '1.0.0';
const STALE_LOCK_MS = 30_000;
/**
 * Bytes a file stream reads at once, or buffers before it pushes back. Node's write default (16 KiB)
 * turns every network chunk into its own write on the thread pool; at 1 MiB, chunks that arrive while
 * a write runs go out as one writev (measured on a 1 GiB pull: 52,000 write calls became 17,600, thread
 * hand-offs halved).
 */
export const IO_BUFFER_BYTES = 1 << 20;

/**
 * An OCI image layout folder (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): the embedded default
 * store. Blobs are written to `ingest/` while hashed and renamed into `blobs/` only when they match.
 * Tags are index.json entries with `org.opencontainers.image.ref.name`; untagged manifests are listed
 * too, so referrers stay discoverable. index.json changes happen under a lock file, so several
 * processes can share one layout.
 */
export class OciLayoutTarget implements Target, RangeReadable, PrivateCopyable {
  readonly location: string;
  private indexQueue: Promise<unknown> = Promise.resolve();

  private constructor(readonly root: string) {
    this.location = `oci-layout:${root}`;
  }

  static async open(root: string): Promise<OciLayoutTarget> {
    const target = new OciLayoutTarget(root);
    await target.initialise();
    return target;
  }

  private async initialise(): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true });
    await mkdir(join(this.root, 'ingest'), { recursive: true });
    const layoutFile = join(this.root, 'oci-layout');
    const existing = await readFile(layoutFile, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (existing === undefined) {
      await writeAtomically(layoutFile, JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
    } else {
      let version: unknown;
      try {
        version = (JSON.parse(existing) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
      } catch {
        version = undefined;
      }
      if (typeof version !== 'string') {
        throw new SplinterError('LAYOUT_INVALID', `${layoutFile} is not an oci-layout file`);
      }
    }
    await this.readIndex();
  }

  private blobPath(desc: Pick<Descriptor, 'digest'>): string {
    return join(this.root, 'blobs', 'sha256', digestHex(desc.digest));
  }

  /**
   * The file holding a stored blob, for a pull to hard-link into a client tree instead of writing the
   * bytes a second time. Whoever links it must treat the blob as shared from then on (see isShared).
   */
  blobFile(desc: Pick<Descriptor, 'digest'>): string {
    return this.blobPath(desc);
  }

  /**
   * Whether a stored blob's file is also linked into a client tree. Such a blob may have been edited in
   * place through the tree, so it is verified before it is trusted again, and a push that makes this
   * store the content's home stores a private copy instead.
   */
  async isShared(desc: Pick<Descriptor, 'digest'>): Promise<boolean> {
    const info = await stat(this.blobPath(desc)).catch(() => undefined);
    return info !== undefined && info.nlink > 1;
  }

  /** Forgets a blob (one found corrupt); a missing blob is not an error. */
  async discard(desc: Pick<Descriptor, 'digest'>): Promise<void> {
    await rm(this.blobPath(desc), { force: true });
  }

  async fetch(desc: Descriptor): Promise<Readable> {
    const handle = await this.openBlob(desc);
    const source = handle.createReadStream({ highWaterMark: IO_BUFFER_BYTES });
    const verifying = new VerifyingStream(desc);
    source.on('error', (error) => verifying.destroy(error));
    return source.pipe(verifying);
  }

  async fetchRange(desc: Descriptor, start: number, end: number): Promise<RangeRead> {
    checkRange(desc, start, end);
    const handle = await this.openBlob(desc);
    const source = handle.createReadStream({ start, end: end - 1, highWaterMark: IO_BUFFER_BYTES });
    // A blob file shorter than its descriptor yields fewer bytes: that is an error, not a short range.
    const exact = sizeLimit({ digest: desc.digest, size: end - start });
    source.on('error', (error) => exact.destroy(error));
    return { kind: 'range', stream: source.pipe(exact) };
  }

  private openBlob(desc: Descriptor) {
    return open(this.blobPath(desc), 'r').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') throw blobUnknown(desc, this.location);
      throw error;
    });
  }

  async exists(desc: Descriptor): Promise<boolean> {
    try {
      const info = await stat(this.blobPath(desc));
      return info.size === desc.size;
    } catch {
      return false;
    }
  }

  push(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    return this.pushContent(expected, content, options, false);
  }

  /**
   * A push that makes this store the content's home: a blob held only as a file a client tree shares
   * (isShared) is stored again as a copy of its own.
   */
  pushPrivate(expected: Descriptor, content: Readable | Uint8Array, options?: PushOptions): Promise<void> {
    return this.pushContent(expected, content, options, true);
  }

  private async pushContent(
    expected: Descriptor,
    content: Readable | Uint8Array,
    options: PushOptions | undefined,
    privateCopy: boolean,
  ): Promise<void> {
    const isManifest = isManifestMediaType(expected.mediaType);
    if (isManifest) {
      const bytes = await readVerified(expected, content, MAX_MANIFEST_BYTES);
      const manifest = parseManifest(bytes, expected.mediaType);
      await this.storeBlob(expected, bytes);
      // Untagged manifests are listed so that referrers and GC roots survive; tags replace them later.
      await this.updateIndex((index) => {
        if (!index.manifests.some((d) => d.digest === expected.digest)) {
          const entry: Descriptor = {
            mediaType: expected.mediaType,
            digest: expected.digest,
            size: expected.size,
          };
          if (manifest.artifactType) entry.artifactType = manifest.artifactType;
          index.manifests.push(entry);
        }
      });
      return;
    }
    if ((await this.exists(expected)) && !(privateCopy && (await this.isShared(expected)))) {
      if (!(content instanceof Uint8Array)) content.resume();
      return;
    }
    await this.storeBlob(expected, content, options);
  }

  private async storeBlob(
    expected: Descriptor,
    content: Readable | Uint8Array,
    options?: PushOptions,
  ): Promise<void> {
    const ingest = join(
      this.root,
      'ingest',
      // The pid tells the next run whether the writer is gone (then the file is removed).
      `${digestHex(expected.digest)}-${process.pid}-${randomBytes(6).toString('hex')}`,
    );
    try {
      const check = contentCheck(expected, options);
      const file = createWriteStream(ingest, { flags: 'wx', highWaterMark: IO_BUFFER_BYTES });
      await (options?.onProgress
        ? pipeline(toReadable(content), check, progressStream(options.onProgress), file)
        : pipeline(toReadable(content), check, file));
      await rename(ingest, this.blobPath(expected));
    } catch (error) {
      await rm(ingest, { force: true });
      throw error;
    }
  }

  async resolve(reference: string): Promise<Descriptor> {
    const index = await this.readIndex();
    const found = isDigest(reference)
      ? index.manifests.find((d) => d.digest === reference)
      : index.manifests.find((d) => d.annotations?.[Annotation.RefName] === reference);
    if (!found) throw new SplinterError('NOT_FOUND', `${this.location} has no manifest ${reference}`);
    const { annotations: _annotations, ...descriptor } = found;
    return descriptor;
  }

  async tag(desc: Descriptor, reference: string): Promise<void> {
    if (reference === '' || hasControlCharacter(reference)) {
      throw new SplinterError('INVALID_REFERENCE', `invalid tag ${JSON.stringify(reference)}`);
    }
    if (!(await this.exists(desc))) throw blobUnknown(desc, this.location);
    await this.updateIndex((index) => {
      index.manifests = index.manifests.filter(
        (d) =>
          d.annotations?.[Annotation.RefName] !== reference &&
          !(d.digest === desc.digest && !d.annotations?.[Annotation.RefName]),
      );
      const entry: Descriptor = {
        mediaType: desc.mediaType,
        digest: desc.digest,
        size: desc.size,
        annotations: { [Annotation.RefName]: reference },
      };
      if (desc.artifactType) entry.artifactType = desc.artifactType;
      index.manifests.push(entry);
    });
  }

  async referrers(subject: Descriptor, artifactType?: string): Promise<Descriptor[]> {
    const index = await this.readIndex();
    const seen = new Set<string>();
    const found: Descriptor[] = [];
    for (const entry of index.manifests) {
      if (seen.has(entry.digest) || entry.mediaType !== MediaType.ImageManifest) continue;
      seen.add(entry.digest);
      const bytes = await readFile(this.blobPath(entry)).catch(() => undefined);
      if (!bytes) continue;
      const manifest = parseManifest(bytes, entry.mediaType);
      if (manifest.subject?.digest !== subject.digest) continue;
      const type = manifest.artifactType ?? ('config' in manifest ? manifest.config.mediaType : undefined);
      if (artifactType !== undefined && type !== artifactType) continue;
      const descriptor: Descriptor = { mediaType: entry.mediaType, digest: entry.digest, size: entry.size };
      if (type) descriptor.artifactType = type;
      if (manifest.annotations) descriptor.annotations = manifest.annotations;
      found.push(descriptor);
    }
    return found;
  }

  private async readIndex(): Promise<ImageIndex> {
    const path = join(this.root, 'index.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        return { schemaVersion: 2, mediaType: MediaType.ImageIndex, manifests: [] };
      }
      throw error;
    }
    try {
      const index = parseManifest(Buffer.from(text), MediaType.ImageIndex);
      if (!('manifests' in index)) throw new Error('not an index');
      return index;
    } catch (error) {
      throw new SplinterError(
        'LAYOUT_INVALID',
        `${path} is not a valid image index: ${(error as Error).message}`,
      );
    }
  }

  /** Read-modify-write of index.json: serialised in this process, and under a lock file across processes. */
  private updateIndex(change: (index: ImageIndex) => void): Promise<void> {
    const run = this.indexQueue.then(async () => {
      const release = await acquireLock(join(this.root, 'index.json.lock'));
      try {
        const index = await this.readIndex();
        change(index);
        index.mediaType = MediaType.ImageIndex;
        await writeAtomically(join(this.root, 'index.json'), JSON.stringify(index));
      } finally {
        await release();
      }
    });
    this.indexQueue = run.catch(() => undefined);
    return run;
  }
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, text, { flag: 'wx' });
  await rename(temporary, path);
}

async function acquireLock(path: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + 60_000;
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(path, 'wx');
      await handle.close();
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const info = await stat(path).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > STALE_LOCK_MS) await rm(path, { force: true });
      if (Date.now() > deadline)
        throw new SplinterError('LAYOUT_INVALID', `timed out waiting for lock ${path}`);
      await sleep(Math.min(50, 2 + attempt * 2));
    }
  }
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) < 0x20) return true;
  return false;
}

import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_PACK_BYTES, type PackEntry } from './format.js';

/** A pack closed and on disk, ready to upload. */
export interface ClosedPack {
  entry: PackEntry;
  path: string;
}

/**
 * New packs close once they reach this size (unless a push adds less): under the registry client's
 * 64 MiB threshold for chunked uploads, which hold each 16 MiB chunk in memory (a 1 GiB push peaked at
 * 252 MiB RSS with 64 MiB packs).
 */
export const TARGET_PACK_BYTES = 60 * 1024 * 1024;

/** Records are written to a pack file 4 MiB at a time (18,000 awaited 64 KiB writes took 5 s of a 1 GiB push). */
const WRITE_BYTES = 4 * 1024 * 1024;

/**
 * Appends records to pack files in a work folder, in the order given: a pack closes once it reaches the
 * target size, is hashed by `digestOf` (a worker thread, when there are any) and handed to `onClosed`
 * (which starts its upload while packing goes on). Records are written through; memory holds no pack.
 */
export class PackWriter {
  private current: { number: number; path: string; file: FileHandle; size: number } | undefined;
  /** Packs closed and being hashed by `digestOf`. */
  private readonly hashing = new Set<Promise<void>>();
  /** Records not yet written, and how many bytes of it they fill: one write per WRITE_BYTES. */
  private readonly buffer = Buffer.allocUnsafe(WRITE_BYTES);
  private buffered = 0;

  constructor(
    private readonly workDir: string,
    private nextNumber: number,
    private readonly keyId: string | undefined,
    private readonly onClosed: (pack: ClosedPack) => void,
    /** `sha256:<hex>` of a closed pack's file. */
    private readonly digestOf: (path: string) => Promise<`sha256:${string}`>,
    private readonly targetBytes = TARGET_PACK_BYTES,
  ) {}

  /** The number the next pack would take (what the root records as `nextPack`). */
  get next(): number {
    return this.nextNumber;
  }

  /** Appends one record; returns where it went. Calls must not overlap (await each). */
  async append(record: Buffer): Promise<{ pack: number; offset: number }> {
    if (
      this.current &&
      this.current.size + record.byteLength > Math.min(this.targetBytes * 2, MAX_PACK_BYTES)
    ) {
      await this.close();
    }
    if (!this.current) await this.openNext();
    const pack = this.current!;
    const offset = pack.size;
    if (this.buffered + record.byteLength > WRITE_BYTES) await this.flush(pack);
    if (record.byteLength >= WRITE_BYTES) await pack.file.write(record, 0, record.byteLength, offset);
    else {
      record.copy(this.buffer, this.buffered);
      this.buffered += record.byteLength;
    }
    pack.size += record.byteLength;
    if (pack.size >= this.targetBytes) await this.close();
    return { pack: pack.number, offset };
  }

  /**
   * Closes the pack being written, if any. Its file is not synced: it is a work file, read back for
   * upload and removed, and stores sync what they keep. It is handed on once hashed (`settled` waits
   * for that).
   */
  async close(): Promise<void> {
    const pack = this.current;
    if (!pack) return;
    this.current = undefined;
    await this.flush(pack);
    await pack.file.close();
    const hashed = this.digestOf(pack.path).then((digest) =>
      this.onClosed({
        path: pack.path,
        entry: { number: pack.number, digest, size: pack.size, ...(this.keyId ? { keyId: this.keyId } : {}) },
      }),
    );
    this.hashing.add(hashed);
    hashed.then(
      () => this.hashing.delete(hashed),
      () => undefined,
    );
  }

  /** Waits for every closed pack to be hashed and handed on. */
  async settled(): Promise<void> {
    await Promise.all([...this.hashing]);
  }

  /** Closes without handing the pack on (a failed push). */
  async abandon(): Promise<void> {
    await Promise.allSettled([...this.hashing]);
    await this.current?.file.close().catch(() => undefined);
    this.current = undefined;
    this.buffered = 0;
  }

  private async flush(pack: { file: FileHandle; size: number }): Promise<void> {
    if (this.buffered === 0) return;
    await pack.file.write(this.buffer, 0, this.buffered, pack.size - this.buffered);
    this.buffered = 0;
  }

  private async openNext(): Promise<void> {
    const number = this.nextNumber++;
    const path = join(this.workDir, `pack-${number}`);
    this.current = { number, path, file: await open(path, 'wx', 0o600), size: 0 };
  }
}

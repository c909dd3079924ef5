import { SplinterError } from '@splintertree/errors';
import { type ChunkRef, Encoding } from './format.js';

/**
 * The index stream: every entry of a version's tree, in byte order of its path. Binary, big-endian:
 *
 *   header  "SPLIDX" 0x00 0x01 | u32 entry count
 *   entry   u8 type (1 file, 2 folder, 3 symlink) | u16 path length | path (UTF-8, '/'-separated)
 *           | u8 flags (bit 0: executable) | u8 tag count | per tag: u8 length | tag (UTF-8)
 *   file    | u32 size high | u32 size low | 32-byte SHA-256 of the content | u32 chunk count
 *           | per chunk: 32-byte id | u32 plain length | u32 pack | u32 offset | u32 stored length
 *             | u8 encoding
 *   symlink | u16 target length | target (UTF-8)
 *
 * A chunk entry holds its record's location, not a position in the stream, so an edit changes only
 * the bytes of the entries it touches and the stream's content-defined chunks around them.
 */
export type IndexEntry =
  | {
      type: 'file';
      path: string;
      executable: boolean;
      tags: string[];
      size: number;
      digest: Buffer;
      chunks: ChunkRef[];
    }
  | { type: 'directory'; path: string; tags: string[] }
  | { type: 'symlink'; path: string; target: string; tags: string[] };

const MAGIC = Buffer.from('SPLIDX\x00\x01', 'latin1');
const TYPE = { file: 1, directory: 2, symlink: 3 } as const;
const CHUNK_ENTRY_BYTES = 32 + 4 * 4 + 1;

export function encodeIndex(entries: readonly IndexEntry[]): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(MAGIC.byteLength + 4);
  MAGIC.copy(header);
  header.writeUInt32BE(entries.length, MAGIC.byteLength);
  parts.push(header);
  for (const entry of entries) {
    const path = utf8(entry.path, 0xffff, 'path');
    const tags = entry.tags.map((tag) => utf8(tag, 0xff, 'tag'));
    const head = Buffer.alloc(1 + 2 + path.byteLength + 2);
    head.writeUInt8(TYPE[entry.type], 0);
    head.writeUInt16BE(path.byteLength, 1);
    path.copy(head, 3);
    head.writeUInt8(entry.type === 'file' && entry.executable ? 1 : 0, 3 + path.byteLength);
    head.writeUInt8(tags.length, 4 + path.byteLength);
    parts.push(head);
    for (const tag of tags) parts.push(Buffer.from([tag.byteLength]), tag);
    if (entry.type === 'file') parts.push(encodeFileBody(entry));
    else if (entry.type === 'symlink') {
      const target = utf8(entry.target, 0xffff, 'symlink target');
      const length = Buffer.alloc(2);
      length.writeUInt16BE(target.byteLength);
      parts.push(length, target);
    }
  }
  return Buffer.concat(parts);
}

function encodeFileBody(entry: Extract<IndexEntry, { type: 'file' }>): Buffer {
  const body = Buffer.alloc(8 + 32 + 4 + entry.chunks.length * CHUNK_ENTRY_BYTES);
  body.writeUInt32BE(Math.floor(entry.size / 2 ** 32), 0);
  body.writeUInt32BE(entry.size % 2 ** 32, 4);
  entry.digest.copy(body, 8);
  body.writeUInt32BE(entry.chunks.length, 40);
  let at = 44;
  for (const ref of entry.chunks) {
    ref.id.copy(body, at);
    body.writeUInt32BE(ref.plainLength, at + 32);
    body.writeUInt32BE(ref.pack, at + 36);
    body.writeUInt32BE(ref.offset, at + 40);
    body.writeUInt32BE(ref.storedLength, at + 44);
    body.writeUInt8(ref.encoding, at + 48);
    at += CHUNK_ENTRY_BYTES;
  }
  return body;
}

function utf8(text: string, max: number, what: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.byteLength > max) {
    throw new SplinterError('INVALID_ARGUMENT', `${what} ${JSON.stringify(text.slice(0, 80))} is too long`);
  }
  return bytes;
}

/** Decodes an index stream; ARCHIVE_INVALID (with the offset) for anything malformed or truncated. */
export function decodeIndex(bytes: Buffer): IndexEntry[] {
  const reader = new Reader(bytes);
  if (!reader.take(MAGIC.byteLength).equals(MAGIC)) invalid('does not start with the index magic', 0);
  const count = reader.u32();
  const entries: IndexEntry[] = [];
  for (let index = 0; index < count; index += 1) {
    const type = reader.u8();
    const path = reader.text(reader.u16());
    const flags = reader.u8();
    const tags: string[] = [];
    for (let n = reader.u8(); n > 0; n -= 1) tags.push(reader.text(reader.u8()));
    if (type === TYPE.file) {
      const size = reader.u32() * 2 ** 32 + reader.u32();
      const digest = Buffer.from(reader.take(32));
      const chunkCount = reader.u32();
      if (chunkCount * CHUNK_ENTRY_BYTES > reader.remaining)
        invalid('declares more chunks than it holds', reader.at);
      const chunks: ChunkRef[] = new Array(chunkCount);
      let total = 0;
      for (let n = 0; n < chunkCount; n += 1) {
        const ref: ChunkRef = {
          id: Buffer.from(reader.take(32)),
          plainLength: reader.u32(),
          pack: reader.u32(),
          offset: reader.u32(),
          storedLength: reader.u32(),
          encoding: reader.u8() as Encoding,
        };
        if (ref.encoding !== Encoding.Raw && ref.encoding !== Encoding.Deflate) {
          invalid(`unknown record encoding ${ref.encoding}`, reader.at);
        }
        total += ref.plainLength;
        chunks[n] = ref;
      }
      if (total !== size)
        invalid(`${JSON.stringify(path)}: chunks add up to ${total} bytes, not ${size}`, reader.at);
      entries.push({ type: 'file', path, executable: (flags & 1) === 1, tags, size, digest, chunks });
    } else if (type === TYPE.directory) {
      entries.push({ type: 'directory', path, tags });
    } else if (type === TYPE.symlink) {
      entries.push({ type: 'symlink', path, target: reader.text(reader.u16()), tags });
    } else {
      invalid(`unknown entry type ${type}`, reader.at);
    }
  }
  if (reader.remaining !== 0) invalid('has bytes after its last entry', reader.at);
  return entries;
}

function invalid(what: string, at: number): never {
  throw new SplinterError('ARCHIVE_INVALID', `the index ${what} (at byte ${at})`);
}

class Reader {
  at = 0;
  constructor(private readonly bytes: Buffer) {}
  get remaining(): number {
    return this.bytes.byteLength - this.at;
  }
  take(length: number): Buffer {
    if (length > this.remaining) invalid('ends in the middle of an entry', this.at);
    const out = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }
  u8(): number {
    return this.take(1).readUInt8(0);
  }
  u16(): number {
    return this.take(2).readUInt16BE(0);
  }
  u32(): number {
    return this.take(4).readUInt32BE(0);
  }
  text(length: number): string {
    const bytes = this.take(length);
    const text = bytes.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(bytes)) invalid('has text that is not UTF-8', this.at);
    return text;
  }
}

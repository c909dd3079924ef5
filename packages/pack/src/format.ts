import { SplinterError } from '@splintertree/errors';
import { z } from 'zod';

/**
 * The chunked artifact format (docs/format.md is the specification). A version is an OCI manifest
 * whose first layer is the index root and whose other layers are every pack it reads from. Files are
 * cut into content-defined chunks named by the SHA-256 of their plaintext; each chunk is one record in
 * a pack; the index (paths, modes, sizes, file digests, chunk lists) is itself chunked and stored in
 * packs, so an edit costs the chunks around it and the index pages around its entry.
 */
export const FORMAT_NAME = 'splinter-chunked-v1';

export const ChunkedMediaType = {
  Root: 'application/vnd.splintertree.root.v1+json',
  SealedRoot: 'application/vnd.splintertree.root.v1.sealed',
  Pack: 'application/vnd.splintertree.pack.v1',
} as const;

/** Manifest annotations of the format. */
export const FormatAnnotation = {
  Format: 'dev.splintertree.format',
  /** The key the sealed root opens with (a preload); never the key itself. */
  KeyId: 'dev.splintertree.seal.key-id',
  /**
   * `false` when the publisher pushed with --allow-unportable (absent otherwise): read from the
   * manifest, so a client off Linux refuses the version before it downloads any layer, even a sealed
   * preload whose root it cannot open yet.
   */
  Portable: 'dev.splintertree.portable',
} as const;

export const Encoding = { Raw: 0, Deflate: 1 } as const;
export type Encoding = (typeof Encoding)[keyof typeof Encoding];

/** Where one chunk's record is, and how to turn it back into the chunk. */
export interface ChunkRef {
  /** SHA-256 of the chunk's plaintext (32 bytes). */
  id: Buffer;
  plainLength: number;
  /** The pack's number in the root's pack table. */
  pack: number;
  offset: number;
  storedLength: number;
  encoding: Encoding;
}

export interface PackEntry {
  /** Stable within a lineage of versions: a pack keeps its number as long as any version uses it. */
  number: number;
  digest: `sha256:${string}`;
  size: number;
  /** Records in this pack are sealed with the patch key of this id. */
  keyId?: string | undefined;
}

export interface ChunkerSettings {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export interface IndexRoot {
  format: typeof FORMAT_NAME;
  chunker: ChunkerSettings;
  /** The number the next new pack of a descendant version takes. */
  nextPack: number;
  packs: PackEntry[];
  index: { digest: `sha256:${string}`; size: number; chunks: ChunkRef[] };
  /** Files and their total plaintext bytes, for progress and reports. */
  files: number;
  bytes: number;
  /** Every tag a file carries (`locale:deDE`, `platform:windows`). */
  tags: string[];
  /** False when the publisher pushed with --allow-unportable: some paths cannot exist on every OS. */
  portable: boolean;
}

/** Packs are bounded so that a record offset fits 32 bits and one blob stays far below registry limits. */
export const MAX_PACK_BYTES = 256 * 1024 * 1024;
export const MAX_ROOT_BYTES = 64 * 1024 * 1024;
const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

const digestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/) as z.ZodType<`sha256:${string}`>;
const u32 = z.number().int().min(0).max(0xffff_ffff);
const refSchema = z.tuple([
  z.string().regex(/^[0-9a-f]{64}$/),
  u32.max(MAX_CHUNK_BYTES),
  u32,
  u32.max(MAX_PACK_BYTES),
  u32.max(MAX_CHUNK_BYTES + 1024),
  z.union([z.literal(Encoding.Raw), z.literal(Encoding.Deflate)]),
]);
const rootSchema = z.object({
  format: z.literal(FORMAT_NAME),
  chunker: z.object({ minSize: u32, avgSize: u32, maxSize: u32.max(MAX_CHUNK_BYTES) }),
  nextPack: u32,
  packs: z.array(
    z.object({
      number: u32,
      digest: digestSchema,
      size: z.number().int().min(0).max(MAX_PACK_BYTES),
      keyId: z.string().max(200).optional(),
    }),
  ),
  index: z.object({
    digest: digestSchema,
    size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    chunks: z.array(refSchema),
  }),
  files: z.number().int().min(0),
  bytes: z.number().int().min(0),
  tags: z.array(z.string().max(200)),
  portable: z.boolean(),
});

export function encodeRoot(root: IndexRoot): Buffer {
  const { index, ...rest } = root;
  return Buffer.from(
    JSON.stringify({ ...rest, index: { ...index, chunks: index.chunks.map(refToJson) } }),
    'utf8',
  );
}

/** The root as published; ARCHIVE_INVALID for anything that is not a well-formed v1 root. */
export function decodeRoot(bytes: Uint8Array): IndexRoot {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new SplinterError('ARCHIVE_INVALID', 'the index root is not JSON');
  }
  const result = rootSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new SplinterError(
      'ARCHIVE_INVALID',
      `the index root is not a ${FORMAT_NAME} root: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim(),
    );
  }
  const root = result.data;
  const numbers = new Set<number>();
  for (const pack of root.packs) {
    if (numbers.has(pack.number)) {
      throw new SplinterError('ARCHIVE_INVALID', `the index root lists pack ${pack.number} twice`);
    }
    numbers.add(pack.number);
  }
  const chunks = root.index.chunks.map(refFromJson);
  for (const ref of chunks) assertRefInPack(ref, root.packs);
  return { ...root, index: { ...root.index, chunks } };
}

/** A record must lie inside a pack the root lists. */
function assertRefInPack(ref: ChunkRef, packs: readonly PackEntry[] | Map<number, PackEntry>): void {
  const pack = packs instanceof Map ? packs.get(ref.pack) : packs.find((p) => p.number === ref.pack);
  if (!pack || ref.offset + ref.storedLength > pack.size) {
    throw new SplinterError(
      'ARCHIVE_INVALID',
      `chunk ${ref.id.toString('hex')} points outside its pack (${ref.pack} @ ${ref.offset})`,
    );
  }
}

type RefJson = [string, number, number, number, number, Encoding];

function refToJson(ref: ChunkRef): RefJson {
  return [ref.id.toString('hex'), ref.plainLength, ref.pack, ref.offset, ref.storedLength, ref.encoding];
}

function refFromJson([id, plainLength, pack, offset, storedLength, encoding]: RefJson): ChunkRef {
  return { id: Buffer.from(id, 'hex'), plainLength, pack, offset, storedLength, encoding };
}

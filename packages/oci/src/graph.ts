import { SplinterError } from '@splintertree/errors';
import type { Descriptor, ImageIndex, ImageManifest, Manifest } from './descriptor.js';
import { isDigest } from './digest.js';
import { MediaType } from './media-types.js';

/**
 * Parses and validates manifest bytes (image manifest or index, OCI or Docker schema 2). Refuses
 * malformed JSON, missing fields and bad descriptors with MANIFEST_INVALID.
 */
export function parseManifest(bytes: Uint8Array, mediaType?: string): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (error) {
    throw invalid(`not JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('not a JSON object');
  const record = value as Record<string, unknown>;
  if (record.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  const declared = typeof record.mediaType === 'string' ? record.mediaType : undefined;
  if (declared !== undefined && mediaType !== undefined && isKnown(mediaType) && declared !== mediaType) {
    throw invalid(`mediaType ${declared} does not match ${mediaType}`);
  }
  const kind = declared ?? mediaType;
  const isIndex =
    kind === MediaType.ImageIndex ||
    kind === MediaType.DockerManifestList ||
    (kind === undefined && 'manifests' in record);
  if (isIndex) {
    if (!Array.isArray(record.manifests)) throw invalid('an index needs a manifests array');
    for (const [i, entry] of record.manifests.entries()) checkDescriptor(entry, `manifests[${i}]`);
  } else {
    checkDescriptor(record.config, 'config');
    if (!Array.isArray(record.layers)) throw invalid('a manifest needs a layers array');
    for (const [i, entry] of record.layers.entries()) checkDescriptor(entry, `layers[${i}]`);
  }
  if (record.subject !== undefined) checkDescriptor(record.subject, 'subject');
  if (record.annotations !== undefined) checkAnnotations(record.annotations, 'annotations');
  return isIndex ? (record as unknown as ImageIndex) : (record as unknown as ImageManifest);
}

/** The descriptors a manifest points at, config first. */
export function successors(manifest: Manifest): Descriptor[] {
  return 'manifests' in manifest ? [...manifest.manifests] : [manifest.config, ...manifest.layers];
}

export function isIndexManifest(manifest: Manifest): manifest is ImageIndex {
  return 'manifests' in manifest;
}

function isKnown(mediaType: string): boolean {
  return (Object.values(MediaType) as string[]).includes(mediaType);
}

function checkDescriptor(value: unknown, where: string): void {
  if (typeof value !== 'object' || value === null) throw invalid(`${where} is not a descriptor`);
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== 'string' || d.mediaType === '') throw invalid(`${where}.mediaType is missing`);
  if (typeof d.digest !== 'string' || !isDigest(d.digest))
    throw invalid(`${where}.digest is not a sha256 digest`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw invalid(`${where}.size is not a non-negative integer`);
  }
  if (d.annotations !== undefined) checkAnnotations(d.annotations, `${where}.annotations`);
}

function checkAnnotations(value: unknown, where: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`${where} is not an object`);
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') throw invalid(`${where}[${JSON.stringify(key)}] is not a string`);
  }
}

function invalid(why: string): SplinterError {
  return new SplinterError('MANIFEST_INVALID', `invalid manifest: ${why}`);
}

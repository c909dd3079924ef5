import { SplinterError } from '@splintertree/errors';
import {
  Annotation,
  type Descriptor,
  descriptorFor,
  EMPTY_JSON,
  EMPTY_JSON_DIGEST,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  MediaType,
} from '@splintertree/oci';

export const ArtifactType = {
  Patch: 'application/vnd.splintertree.patch.v1',
  Mod: 'application/vnd.splintertree.mod.v1',
} as const;

export type ArtifactKind = 'patch' | 'mod';

export const ArtifactAnnotation = {
  Realm: 'dev.splintertree.patch.realm',
  Version: 'dev.splintertree.version',
  Parent: 'dev.splintertree.patch.parent',
  ModName: 'dev.splintertree.mod.name',
  Mods: 'dev.splintertree.patch.mods',
} as const;

export const EMPTY_CONFIG: Descriptor = { mediaType: MediaType.Empty, digest: EMPTY_JSON_DIGEST, size: 2 };
export { EMPTY_JSON };

export interface ArtifactManifestInput {
  kind: ArtifactKind;
  layers: Descriptor[];
  annotations: Record<string, string>;
  /** Seconds since 1970; defaults to now. ORAS writes RFC 3339 UTC with second precision. */
  createdAt?: number;
}

export interface EncodedManifest {
  manifest: ImageManifest;
  bytes: Buffer;
  descriptor: Descriptor;
}

/** An ORAS-style artifact manifest (image-spec 1.1: artifactType, empty config). */
export function buildArtifactManifest(input: ArtifactManifestInput): EncodedManifest {
  const created = new Date((input.createdAt ?? Math.floor(Date.now() / 1000)) * 1000)
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z');
  const artifactType = input.kind === 'patch' ? ArtifactType.Patch : ArtifactType.Mod;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    artifactType,
    config: EMPTY_CONFIG,
    layers: input.layers.length > 0 ? input.layers : [EMPTY_CONFIG],
    annotations: { [Annotation.Created]: created, ...sortedRecord(input.annotations) },
  };
  return encodeManifest(manifest);
}

function encodeManifest(manifest: ImageManifest): EncodedManifest {
  const bytes = Buffer.from(JSON.stringify(manifest), 'utf8');
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new SplinterError(
      'MANIFEST_TOO_LARGE',
      `manifest is ${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit registries accept`,
    );
  }
  const descriptor = descriptorFor(manifest.mediaType ?? MediaType.ImageManifest, bytes);
  if (manifest.artifactType !== undefined) descriptor.artifactType = manifest.artifactType;
  return { manifest, bytes, descriptor };
}

function sortedRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Refuses a manifest that is not a splinter artifact of `kind` (UNSUPPORTED_MEDIA_TYPE). */
export function assertArtifactKind(manifest: ImageManifest, kind: ArtifactKind, reference: string): void {
  const expected = kind === 'patch' ? ArtifactType.Patch : ArtifactType.Mod;
  if (manifest.artifactType !== expected) {
    throw new SplinterError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${reference} is ${manifest.artifactType ?? 'not an artifact'}, not a ${kind} (${expected})`,
    );
  }
}

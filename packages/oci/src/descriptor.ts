import { MediaType } from './media-types.js';

export type Digest = `sha256:${string}`;

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  artifactType?: string;
  urls?: string[];
  data?: string;
  platform?: Record<string, unknown>;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: typeof MediaType.ImageManifest | typeof MediaType.DockerManifest;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: typeof MediaType.ImageIndex | typeof MediaType.DockerManifestList;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export type Manifest = ImageManifest | ImageIndex;

export function isManifestMediaType(mediaType: string): boolean {
  return (
    mediaType === MediaType.ImageManifest ||
    mediaType === MediaType.ImageIndex ||
    mediaType === MediaType.DockerManifest ||
    mediaType === MediaType.DockerManifestList
  );
}

import type { ArtifactKind } from './artifact.js';

export type SignatureFormat = 'legacy' | 'bundle' | 'both';

export interface PushInput {
  kind: ArtifactKind;
  dir: string;
  version: string;
  /** Patches: the realm. */
  realm?: string;
  /** Mods: the mod's name. */
  name?: string;
  /** Patches: parent id or version; defaults to the realm's head. */
  parent?: string;
  /** Patches: mod references to bundle (resolved and pinned by digest). */
  mods?: string[];
  /** Patches: encrypt every content layer; register with status `preload`. */
  preload?: boolean;
  /** `host[:port][/namespace]`; unset means the configured registry, else the embedded store. */
  registry?: string | undefined;
  concurrency?: number | undefined;
}

export interface TransferStats {
  uploaded: number;
  skipped: number;
  mounted: number;
  bytes: number;
}

export interface PushResult {
  kind: ArtifactKind;
  digest: string;
  reference: string;
  /** Patches: the id `cluster.patches` gave it, its status and parent. */
  id?: string;
  status?: string;
  parent?: string | null;
  keyId?: string;
  blobs: TransferStats;
  signatures: Array<{ format: 'legacy' | 'bundle'; location: string }>;
}

export interface PullInput {
  kind: ArtifactKind;
  reference: string;
  output: string;
  replace?: boolean;
  concurrency?: number | undefined;
  /** Patches pushed with --preload: the 32-byte key released by unlock. */
  patchKey?: Uint8Array | undefined;
}

export interface PullResult {
  kind: ArtifactKind;
  digest: string;
  reference: string;
  output: string;
  files: number;
  bytes: number;
  /** Blobs downloaded (and kept in the cache) versus found in the cache already. */
  blobs: { downloaded: number; cached: number; bytes: number };
  verifiedBy: Array<{ format: 'legacy' | 'bundle'; keyId: string }>;
}

export interface InspectResult {
  reference: string;
  digest: string;
  mediaType: string;
  artifactType: string | undefined;
  annotations: Record<string, string>;
  layers: Array<{ digest: string; size: number; mediaType: string; title: string | undefined }>;
  referrers: Array<{ digest: string; mediaType: string; artifactType: string | undefined }>;
}

import type { TransferStats } from '@splintertree/oci';
import type { KeepPolicy, PublishStats, TagRule } from '@splintertree/pack';
import type { Signer, TrustedKey } from '@splintertree/sign';
import type { ArtifactKind } from './artifact.js';

/** Which cosign formats to sign in: the legacy `.sig` image, a Sigstore bundle referrer, or both. */
export type SignatureFormat = 'legacy' | 'bundle' | 'both';

export interface SignatureRecord {
  format: 'legacy' | 'bundle';
  /** The `.sig` tag or the bundle referrer's digest, as a full reference. */
  location: string;
}

/** What a pull trusts: these keys, or nothing at all when the caller explicitly skips verification. */
export type PullTrust = { keys: TrustedKey[] } | { skipVerification: true };

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
  /** Patches: keys the bundled mods must be signed by; unset means the realm's stored mod trust. */
  modTrust?: TrustedKey[] | undefined;
  /** Patches: encrypt every content layer; register with status `preload`. */
  preload?: boolean;
  /** `host[:port][/namespace]`; unset means the configured registry, else the embedded store. */
  registry?: string | undefined;
  concurrency?: number | undefined;
  /** Sign the pushed manifest with this key (load it first, so a wrong password uploads nothing). */
  signer?: Signer | undefined;
  /** Default `both`. */
  signatureFormat?: SignatureFormat | undefined;
  /** Mods: an earlier version in the same repository whose chunks are reused (patches use the parent). */
  base?: string | undefined;
  /** Tags for files matching globs (`locale:deDE`); see docs/format.md. */
  tagRules?: TagRule[] | undefined;
  /** Accept paths that cannot exist on every player's OS (the root records it). */
  allowUnportable?: boolean | undefined;
  /** Follow symlinks that leave the folder, copying in what they point at (`tar -h`, `cp -L`). */
  dereference?: boolean | undefined;
  /** Stops the push (INTERRUPTED): no new upload starts, those under way are cut short, nothing is tagged. */
  signal?: AbortSignal | undefined;
}

export type { TransferStats };

export interface PushResult {
  kind: ArtifactKind;
  digest: string;
  reference: string;
  /** Patches: the id `cluster.patches` gave it, its status and parent. */
  id?: string;
  status?: string;
  parent?: string | null;
  keyId?: string;
  /** A patch version pushed again with the same content: nothing was registered or uploaded. */
  alreadyPushed?: boolean;
  /** What was uploaded (blobs), and what the registry already held or mounted. */
  transfer: TransferStats;
  /** What chunking found: files, chunks, and how many were new. */
  chunks: PublishStats;
  signatures: SignatureRecord[];
}

export interface PullInput {
  kind: ArtifactKind;
  reference: string;
  output: string;
  replace?: boolean;
  concurrency?: number | undefined;
  /** Checked before any content blob is downloaded. */
  trust: PullTrust;
  /** Preloaded patches: the 32-byte keys released by unlock (the head's and its ancestors'). */
  keys?: Uint8Array[] | undefined;
  /** Install files tagged with this locale (and untagged ones) only. */
  locale?: string | undefined;
  platform?: string | undefined;
  /** Keep files in `output` the last install did not put there; refuse to overwrite them (launchers). */
  keepUnowned?: KeepPolicy | undefined;
  /**
   * What a signed release statement says the manifest is: checked once the manifest is read, before
   * any content (RELEASE_HEAD_MISMATCH), so a re-tagged or substituted manifest installs nothing.
   */
  expect?: ExpectedManifest | undefined;
  /**
   * Stops the download and install (INTERRUPTED): no new request starts, those under way are cut short,
   * the cache lists nothing cut short, and `output` is left as it was.
   */
  signal?: AbortSignal | undefined;
}

export interface ExpectedManifest {
  digest?: string | undefined;
  /** Annotations the manifest must carry with exactly these values (version, realm). */
  annotations?: Record<string, string> | undefined;
  /** Names what vouches for these values in messages, e.g. `release statement #12`. */
  source: string;
}

/** What pull and fetch take: which artifact, whose signatures to trust, keys, and which files. */
export type DownloadInput = Omit<PullInput, 'output' | 'replace'>;

/** What `prefetch` (`splinter patch fetch`, the launcher's preload staging) did. */
export interface FetchResult {
  kind: ArtifactKind;
  digest: string;
  reference: string;
  /** What was downloaded (records), and what the cache already held. */
  transfer: TransferStats;
  /** Signatures that verified; empty only when verification was skipped. */
  verifiedBy: VerifiedSignature[];
  verificationSkipped: boolean;
}

/** A fetch that also unpacked the artifact into `output`: `files` and `bytes` written there. */
export interface PullResult extends FetchResult {
  output: string;
  files: number;
  bytes: number;
  /** Files linked unchanged from the tree that was replaced. */
  kept: number;
  /** Files of that tree patched in place: only their changed bytes were written. */
  patched: number;
}

export interface VerifiedSignature {
  format: 'legacy' | 'bundle';
  keyId: string;
  /** The trusted key's file. */
  key: string;
  signatureDigest: string;
}

export interface SignResult {
  digest: string;
  reference: string;
  signatures: SignatureRecord[];
}

export interface VerifyResult {
  digest: string;
  reference: string;
  verified: VerifiedSignature[];
  rejected: Array<{ format: 'legacy' | 'bundle'; code: string; reason: string; signatureDigest: string }>;
  /** Attestations and signatures past the read limits: found, but not release signatures. */
  ignored: Array<{ format: 'legacy' | 'bundle'; reason: string; signatureDigest: string }>;
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

import { SplinterError } from '@splintertree/errors';
import {
  type Descriptor,
  type ImageManifest,
  type ProgressListener,
  progressTo,
  type Target,
  throwIfAborted,
} from '@splintertree/oci';
import { FormatAnnotation, fileSystemError, platformName, type Selection } from '@splintertree/pack';
import { keyIdOf } from '@splintertree/seal';
import { requireTrustedSignature } from '@splintertree/sign';
import { assertArtifactKind } from './artifact.js';
import type { CoreContext } from './context.js';
import { fetchManifest, installVersion, prefetchVersion, type VersionSource } from './install.js';
import { formatLocation, type Location } from './locations.js';
import type {
  DownloadInput,
  ExpectedManifest,
  FetchResult,
  PullInput,
  PullResult,
  TransferStats,
  VerifiedSignature,
} from './types.js';

/** Downloads out of a store: pull (install into a folder) and prefetch (into the cache only). */

export async function pull(ctx: CoreContext, input: PullInput): Promise<PullResult> {
  const { outcome, fetched } = await download(ctx, input, 'pull', async (source) => {
    const installed = await installVersion({
      ...source,
      output: input.output,
      replace: input.replace === true,
      keepUnowned: input.keepUnowned,
      platform: ctx.options.platform,
    });
    return { outcome: installed, stats: installed.fetch };
  });
  return {
    ...fetched,
    output: input.output,
    files: outcome.files,
    bytes: outcome.bytes,
    kept: outcome.kept,
    patched: outcome.patched,
  };
}

/**
 * Downloads what installing an artifact will need into the local cache without installing it
 * (launchers stage preloads early this way): the same signature check as a pull comes first, and a
 * later pull or rollback to it downloads nothing (or, for a preload whose key is not released yet,
 * only records of packs the cache already held in part).
 */
export async function prefetch(ctx: CoreContext, input: DownloadInput): Promise<FetchResult> {
  const { fetched } = await download(ctx, input, 'fetch', async (source) => {
    const stats = await prefetchVersion(source);
    return { outcome: stats, stats };
  });
  return fetched;
}

/**
 * What pull and fetch share: signatures checked before anything of the artifact beyond its manifest
 * digest is read, the manifest's kind checked, then `run` over the client's cache, with downloaded
 * bytes counted and drawn on the progress bar.
 */
async function download<T>(
  ctx: CoreContext,
  input: DownloadInput,
  verb: 'pull' | 'fetch',
  run: (
    source: VersionSource & { manifestDigest: string; selection: Selection },
  ) => Promise<{ outcome: T; stats: TransferStats }>,
): Promise<{ outcome: T; fetched: FetchResult }> {
  throwIfAborted(input.signal);
  const { location, target, descriptor } = await ctx.locate(input.reference);
  const verifiedBy = await requireTrust(ctx, target, location, descriptor, input.trust);
  const manifest = await fetchManifest(target, descriptor);
  assertArtifactKind(manifest, input.kind, input.reference);
  assertPortableHere(manifest, input.reference, ctx.options.platform ?? process.platform);
  if (input.expect) assertExpected(manifest, descriptor.digest, input.expect, input.reference);
  const counter = byteCounter(ctx, `${verb} ${location.repository}`);
  try {
    // A full or refusing disk (cache or output) is one line with its own code, never INTERNAL.
    const { outcome, stats } = await run({
      manifest,
      manifestDigest: descriptor.digest,
      remote: target,
      state: await ctx.clientState(),
      keys: keyRing(input.keys ?? []),
      concurrency: ctx.concurrency(input.concurrency),
      onProgress: counter.listener,
      signal: input.signal,
      selection: { locale: input.locale, platform: input.platform },
    });
    await ctx.recordBlobLocations(location, manifest);
    return {
      outcome,
      fetched: {
        kind: input.kind,
        digest: descriptor.digest,
        reference: formatLocation({ ...location, digest: descriptor.digest }),
        // Index records included: every pack byte the run downloaded.
        transfer: { ...stats, bytes: counter.total() },
        verifiedBy,
        verificationSkipped: !('keys' in input.trust),
      },
    };
  } catch (error) {
    throw fileSystemError(error);
  } finally {
    counter.end();
  }
}

/** The signatures that verify under the trusted keys, or a warning when verification is skipped. */
async function requireTrust(
  ctx: CoreContext,
  target: Target,
  location: Location,
  descriptor: Descriptor,
  trust: PullInput['trust'],
): Promise<VerifiedSignature[]> {
  if ('keys' in trust) return (await requireTrustedSignature(target, descriptor, trust.keys)).verified;
  ctx.warn(
    `reading ${formatLocation({ ...location, digest: descriptor.digest })} without verifying any signature`,
    { reason: 'verification-skipped' },
  );
  return [];
}

/** Counts downloaded bytes and draws the download's events on the progress bar. */
function byteCounter(
  ctx: CoreContext,
  label: string,
): { listener: ProgressListener; total: () => number; end: () => void } {
  const progress = ctx.options.progress;
  const draw = progressTo(progress);
  progress?.begin(label, 0);
  let total = 0;
  return {
    listener: (event) => {
      if (event.type === 'bytes') total += event.bytes;
      draw?.(event);
    },
    total: () => total,
    end: () => progress?.end(),
  };
}

/** A version that records unportable paths is for Linux: refused elsewhere before any layer is read. */
function assertPortableHere(manifest: ImageManifest, reference: string, platform: NodeJS.Platform): void {
  if (manifest.annotations?.[FormatAnnotation.Portable] !== 'false' || platform === 'linux') return;
  throw new SplinterError(
    'UNPORTABLE_PATH',
    `${reference} records paths for Linux file systems only: they cannot all exist on ${platformName(platform)}; nothing was downloaded`,
    { details: { reason: 'unportable-version', platform } },
  );
}

function assertExpected(
  manifest: ImageManifest,
  digest: string,
  expected: ExpectedManifest,
  reference: string,
): void {
  if (expected.digest !== undefined && expected.digest !== digest) {
    throw new SplinterError(
      'RELEASE_HEAD_MISMATCH',
      `${reference} is ${digest}, but the ${expected.source} names ${expected.digest}`,
    );
  }
  for (const [name, value] of Object.entries(expected.annotations ?? {})) {
    const found = manifest.annotations?.[name];
    if (found !== value) {
      throw new SplinterError(
        'RELEASE_HEAD_MISMATCH',
        `${reference} says ${name}=${JSON.stringify(found ?? null)}, but the ${expected.source} names ${JSON.stringify(value)}`,
      );
    }
  }
}

/** Patch keys by their ids. */
function keyRing(keys: Uint8Array[]): Map<string, Uint8Array> {
  return new Map(keys.map((key) => [keyIdOf(key), key]));
}

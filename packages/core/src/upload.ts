import { join } from 'node:path';
import type { SplinterError } from '@splintertree/errors';
import {
  type CopyOptions,
  type CopyStats,
  type Descriptor,
  progressTo,
  type Target,
  throwIfAborted,
} from '@splintertree/oci';
import type { BaseVersion } from '@splintertree/pack';
import { unwrapKey } from '@splintertree/seal';
import type { CoreContext } from './context.js';
import { fetchManifest, openVersion } from './install.js';
import { formatLocation, type Location } from './locations.js';
import { resolveKek } from './preload.js';
import { publishFolder } from './publish.js';
import { NoNewContentTarget } from './repush.js';
import { signManifest } from './signing.js';
import type { PushInput, PushResult, TransferStats } from './types.js';

/**
 * What a patch push and a mod push share once their own checks are done: pack the folder against a
 * base version, upload with the progress bar drawn, tag, sign.
 */
export interface Upload {
  /** The realm or mod name (the progress label). */
  leaf: string;
  version: string;
  destination: Location;
  target: Target;
  /** The manifest's annotations, in the order they are written. */
  annotations: Record<string, string>;
  createdAt: number | undefined;
  /** A preload: sealed under this key. */
  patchKey?: Uint8Array | undefined;
  /** The version whose chunks are reused, and the chain of patch ids whose keys may open it. */
  base: { reference: string | undefined; chainIds: string[] };
  /** A re-push of a version that exists: the refusal for any blob or tag the store lacks. */
  unchanged?: ((blob?: Descriptor) => SplinterError) | undefined;
}

/** The pushed result, and the manifest's descriptor for the caller that records where it went. */
export async function upload(
  ctx: CoreContext,
  input: PushInput,
  plan: Upload,
): Promise<{ result: PushResult; manifest: Descriptor }> {
  const concurrency = ctx.concurrency(input.concurrency);
  const { destination, target } = plan;
  const base = await baseVersion(ctx, target, plan.base.reference, plan.base.chainIds, concurrency);
  const { manifest, stats, chunks } = await transfer(
    ctx,
    `push ${plan.leaf}`,
    destination,
    input.signal,
    (copy) =>
      publishFolder({
        kind: input.kind,
        dir: input.dir,
        tmpRoot: join(ctx.settings.home, 'tmp'),
        annotations: plan.annotations,
        createdAt: plan.createdAt,
        patchKey: plan.patchKey,
        base,
        tagRules: input.tagRules,
        portable: input.allowUnportable !== true,
        dereference: input.dereference,
        concurrency,
        threads: ctx.settings.chunkThreads,
        destination: plan.unchanged ? new NoNewContentTarget(target, plan.unchanged) : target,
        copy,
      }),
  );
  const manifestDescriptor = manifest.descriptor;
  await ctx.recordBlobLocations(destination, manifest.manifest);
  // Stopped meanwhile: the version is neither tagged nor registered.
  throwIfAborted(input.signal);
  await target.tag(manifestDescriptor, plan.version);
  const signatures = input.signer
    ? await signManifest(
        target,
        manifestDescriptor,
        input.signer,
        input.signatureFormat ?? 'both',
        destination,
      )
    : [];
  const result: PushResult = {
    kind: input.kind,
    digest: manifestDescriptor.digest,
    reference: formatLocation(destination),
    transfer: transferStats(stats),
    chunks,
    signatures,
  };
  return { result, manifest: manifestDescriptor };
}

/**
 * The version a push builds on (the parent patch, or a mod's --base), read from the same repository:
 * its chunks are reused without asking the registry. A base in another repository, or a preload whose
 * keys this publisher cannot unwrap, is skipped with a warning: the push then uploads everything.
 */
async function baseVersion(
  ctx: CoreContext,
  target: Target,
  reference: string | undefined,
  chainIds: string[],
  concurrency: number,
): Promise<BaseVersion | undefined> {
  if (reference === undefined) return undefined;
  const { target: baseTarget, descriptor } = await ctx.locate(reference);
  if (baseTarget.location !== target.location) {
    ctx.warn(`the base ${reference} is in another repository: its chunks are uploaded again`);
    return undefined;
  }
  const manifest = await fetchManifest(baseTarget, descriptor);
  try {
    return await openVersion({
      manifest,
      remote: baseTarget,
      state: await ctx.clientState(),
      keys: await publisherKeys(ctx, chainIds),
      concurrency,
    });
  } catch (error) {
    if ((error as { code?: string }).code !== 'KEY_REQUIRED') throw error;
    ctx.warn(`the base ${reference} is sealed and its key cannot be unwrapped here: nothing is reused`);
    return undefined;
  }
}

/** The patch keys of a chain, unwrapped with the KEK when this process has it. */
async function publisherKeys(ctx: CoreContext, chainIds: string[]): Promise<Map<string, Uint8Array>> {
  const keys = new Map<string, Uint8Array>();
  if (chainIds.length === 0) return keys;
  const kek = await resolveKek(ctx.settings, 'reading a sealed base').catch(() => undefined);
  if (!kek) return keys;
  const access = await ctx.access();
  for (const id of chainIds) {
    const state = await access.unlockState(id);
    if (state?.key?.wrappedKey)
      keys.set(state.key.keyId, unwrapKey(kek, state.key.wrappedKey, state.key.keyId));
  }
  return keys;
}

/**
 * Runs one copy into a store with the progress bar drawn from its events; a registry destination is
 * offered the repositories known to hold each blob, to mount from.
 */
async function transfer<T>(
  ctx: CoreContext,
  label: string,
  remote: Location,
  signal: AbortSignal | undefined,
  run: (copy: Omit<CopyOptions, 'concurrency'>) => Promise<T>,
): Promise<T> {
  const progress = ctx.options.progress;
  const mountFrom =
    remote.kind === 'registry' ? await ctx.blobLocations.candidates(remote.registry) : undefined;
  progress?.begin(label, 0);
  try {
    return await run({
      ...(mountFrom ? { mountFrom } : {}),
      onProgress: progressTo(progress),
      signal,
    });
  } finally {
    progress?.end();
  }
}

/** A copy's stats without its manifest count: what push and pull both report. */
function transferStats({ manifests: _manifests, ...stats }: CopyStats): TransferStats {
  return stats;
}

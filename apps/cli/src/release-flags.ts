import {
  DEFAULT_RELEASE_TTL_MS,
  loadReleaseTrust,
  loadSigningKeyRef,
  parseDuration,
  type ReleaseSigning,
  type ReleaseTrust,
  type Settings,
  type Signer,
} from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { collect } from './context.js';
import { readPassword } from './password.js';

export interface ReleaseSigningFlags {
  releaseKey?: string;
  releaseTtl?: string;
  plainHttp?: boolean;
}

export interface ReleaseTrustFlags {
  releaseKeyFile: string[];
  releaseKeys: string[];
}

/** --release-key FILE and --release-ttl DURATION: sign a release statement with the head move. */
export function addReleaseSigningOptions(command: Command): Command {
  return command
    .option(
      '--release-key <file>',
      'release key (cosign format, not a content key) to sign the release statement with (env SPLINTER_RELEASE_KEY)',
    )
    .option('--release-ttl <duration>', 'how long the statement is valid, e.g. 36h or 7d (default 7d)')
    .option('--plain-http', 'talk plain HTTP to the registry the statement is published to');
}

/**
 * The release key from --release-key or SPLINTER_RELEASE_KEY, opened with SPLINTER_RELEASE_PASSWORD
 * (else the key password); undefined when neither names one and `required` is false.
 */
export async function releaseSigningFromFlags(
  flags: ReleaseSigningFlags,
  settings: Settings,
  required: boolean,
): Promise<ReleaseSigning | undefined> {
  const file = flags.releaseKey ?? settings.releaseKey;
  if (file === undefined) {
    if (flags.releaseTtl !== undefined)
      throw new SplinterError('INVALID_ARGUMENT', '--release-ttl needs a release key (--release-key)');
    if (required)
      throw new SplinterError(
        'INVALID_ARGUMENT',
        'a release key is required: --release-key FILE or SPLINTER_RELEASE_KEY',
      );
    return undefined;
  }
  const ttlMs =
    flags.releaseTtl === undefined
      ? DEFAULT_RELEASE_TTL_MS
      : parseDuration(flags.releaseTtl, '--release-ttl');
  return { signer: await loadReleaseSigner(file, settings), ttlMs };
}

/** --release-key-file PUB and --release-keys FILE: what a launcher or activator trusts for releases. */
export function addReleaseTrustOptions(command: Command): Command {
  return command
    .option(
      '--release-key-file <pubfile>',
      'accept a head only with a release statement signed by this release key (repeatable)',
      collect,
      [],
    )
    .option(
      '--release-keys <file>',
      'signed release key lists (one, or a JSON array), each signed by a key of the one before (repeatable)',
      collect,
      [],
    );
}

export async function releaseTrustFromFlags(flags: ReleaseTrustFlags): Promise<ReleaseTrust | undefined> {
  return loadReleaseTrust({ keyFiles: flags.releaseKeyFile, keyListFiles: flags.releaseKeys });
}

/** A release key by reference (a file, env://VAR, k8s://NS/NAME), its password as cosign takes it. */
export function loadReleaseSigner(ref: string, settings: Settings): Promise<Signer> {
  return loadSigningKeyRef(ref, () => readPassword(settings.releaseKeyPassword, false, ref));
}

/** A stored statement for printing: its number and times; the envelope itself is for `release show`. */
export function withoutEnvelope<T extends { envelope: string }>(stored: T): Omit<T, 'envelope'> {
  const { envelope: _envelope, ...rest } = stored;
  return rest;
}

import {
  loadSigningKeyRef,
  loadTrustedKeys,
  type PullTrust,
  type Signer,
  type TrustedKey,
} from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import { type Command, Option } from 'commander';
import { collect, loadSettings } from './context.js';
import { readPassword } from './password.js';

export interface TrustFlags {
  key: string[];
  trust?: string;
  insecureSkipVerify?: boolean;
}

/**
 * Opens a cosign private key: a file, `env://VAR` or `k8s://NAMESPACE/NAME`. The password comes as
 * cosign takes it (a k8s secret's cosign.password, else COSIGN_PASSWORD, ..., a prompt).
 */
export async function loadSignerFlag(keyFile: string): Promise<Signer> {
  return loadSigningKeyRef(keyFile, () => readPassword(loadSettings().keyPassword, false, keyFile));
}

export async function trustedKeysFromFlags(flags: TrustFlags): Promise<TrustedKey[]> {
  const keys = await loadTrustedKeys({ keyFiles: flags.key, trustFile: flags.trust });
  if (keys.length === 0) {
    throw new SplinterError(
      'TRUST_REQUIRED',
      'no trusted public key: give --key PUBFILE or --trust FILE (or, for unsigned content, --insecure-skip-verify)',
    );
  }
  return keys;
}

export async function trustFromFlags(flags: TrustFlags): Promise<PullTrust> {
  if (flags.insecureSkipVerify === true) {
    if (flags.key.length > 0 || flags.trust !== undefined) {
      throw new SplinterError(
        'INVALID_ARGUMENT',
        '--insecure-skip-verify cannot be combined with --key or --trust',
      );
    }
    return { skipVerification: true };
  }
  return { keys: await trustedKeysFromFlags(flags) };
}

export function signatureFormatOption(): Option {
  return new Option('--signature-format <format>', 'cosign formats to sign in')
    .choices(['legacy', 'bundle', 'both'])
    .default('both');
}

/** --key PUB (repeatable), --trust FILE and --insecure-skip-verify: what a pull or verify trusts. */
export function addTrustOptions(command: Command, skippable: boolean): Command {
  command
    .option(
      '--key <pubkey>',
      'trusted public key: PEM file, env://VAR or k8s://NS/NAME (repeatable, for key rotation)',
      collect,
      [],
    )
    .option('--trust <file>', 'trust file: PEM public keys and/or paths of .pub files, one per line');
  if (skippable) {
    command.option('--insecure-skip-verify', 'do not verify signatures (warns on stderr)');
  }
  return command;
}

export interface ModTrustFlags {
  modKey: string[];
  modTrust?: string;
}

/** --mod-key PUB (repeatable) and --mod-trust FILE: what a patch's mods must be signed by, this time. */
export function addModTrustOptions(command: Command): Command {
  return command
    .option(
      '--mod-key <pubfile>',
      "trusted mod signing key (repeatable; default: the realm's, from realm trust set)",
      collect,
      [],
    )
    .option('--mod-trust <file>', 'trust file for the mods (instead of the realm stored one)');
}

/** The keys given on the command line for mods, or undefined to use the realm's stored policy. */
export async function modTrustFromFlags(flags: ModTrustFlags): Promise<TrustedKey[] | undefined> {
  if (flags.modKey.length === 0 && flags.modTrust === undefined) return undefined;
  return loadTrustedKeys({ keyFiles: flags.modKey, trustFile: flags.modTrust });
}

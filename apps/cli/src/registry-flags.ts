import type { RegistryAccess, Settings } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import { type Command, Option } from 'commander';

/** The registry-access flags every command that talks to a registry takes (docs/registry-access.md). */
export interface RegistryFlags {
  plainHttp?: boolean;
  caFile?: string;
  insecure?: boolean;
  registryConfig?: string;
  authfile?: string;
}

/**
 * --ca-file and --insecure (oras), --registry-config (oras, helm) and its skopeo/podman spelling
 * --authfile. --plain-http stays where each command declares it.
 */
export function addRegistryAccessOptions(command: Command, transport = true): Command {
  if (transport) {
    command
      .option(
        '--ca-file <pem>',
        "trust this CA's certificates too, for a private registry CA (env SPLINTER_CA_FILE)",
      )
      .option(
        '--insecure',
        'TLS without certificate verification; unlike --plain-http (env SPLINTER_INSECURE)',
      );
  }
  return command
    .option(
      '--registry-config <path>',
      'auth file holding registry logins (env REGISTRY_AUTH_FILE; default $DOCKER_CONFIG/config.json)',
    )
    .addOption(new Option('--authfile <path>', 'the same as --registry-config (skopeo, podman)'));
}

/** The flags over their environment variables: what the core's Stores take. */
export function registryAccessOf(flags: RegistryFlags, settings: Settings): RegistryAccess {
  if (
    flags.registryConfig !== undefined &&
    flags.authfile !== undefined &&
    flags.registryConfig !== flags.authfile
  ) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      '--registry-config and --authfile name different files: give one',
    );
  }
  return {
    authFile: flags.registryConfig ?? flags.authfile,
    caFile: flags.caFile ?? settings.caFile,
    insecure: flags.insecure === true || settings.insecure,
  };
}

/** --plain-http, or SPLINTER_PLAIN_HTTP. */
export function plainHttpOf(flags: RegistryFlags, settings: Settings): boolean {
  return flags.plainHttp === true || settings.plainHttp;
}

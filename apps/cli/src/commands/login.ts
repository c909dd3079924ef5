import { registryLogin, registryLogout } from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';
import type { Command } from 'commander';
import { globalOptions, loadSettings } from '../context.js';
import { printResult, warn } from '../output.js';
import { ask, readStdin } from '../password.js';
import {
  addRegistryAccessOptions,
  plainHttpOf,
  type RegistryFlags,
  registryAccessOf,
} from '../registry-flags.js';

interface LoginFlags extends RegistryFlags {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  identityToken?: string;
  identityTokenStdin?: boolean;
}

/**
 * `splinter login` and `splinter logout`, as `docker login`/`oras login` and `skopeo login` take them:
 * `-u/--username`, `--password-stdin` (`-p` works but warns, as docker's does), the auth file from
 * --registry-config/--authfile, REGISTRY_AUTH_FILE or DOCKER_CONFIG, and a configured credential helper.
 */
export function registerLoginCommands(program: Command): void {
  addRegistryAccessOptions(
    program
      .command('login <registry>')
      .description('check a login against a registry and save it in the auth file (docker config.json)')
      .option('-u, --username <name>', 'user name')
      .option(
        '-p, --password <password>',
        'password (visible in ps and shell history: prefer --password-stdin)',
      )
      .option('--password-stdin', 'read the password (or token) from standard input')
      .option('--identity-token <token>', 'an identity (OAuth2 refresh) token instead of a password (oras)')
      .option('--identity-token-stdin', 'read the identity token from standard input (oras)')
      .option('--plain-http', 'talk plain HTTP to the registry (env SPLINTER_PLAIN_HTTP)'),
  ).action(async function (this: Command, registry: string, flags: LoginFlags) {
    const settings = loadSettings();
    const output = globalOptions(this);
    const login = await loginOf(flags);
    const result = await registryLogin({
      registry,
      ...login,
      plainHttp: plainHttpOf(flags, settings),
      access: registryAccessOf(flags, settings),
      settings,
    });
    if (result.missingHelper) {
      warn(
        `${result.missingHelper} is configured but not installed: the login is stored unencrypted in ${result.authFile}`,
      );
    }
    printResult(output, result, [
      result.credentialHelper
        ? `Login saved in ${result.credentialHelper} (${result.authFile} lists it)`
        : `Login saved in ${result.authFile}`,
      'Login Succeeded',
    ]);
  });

  addRegistryAccessOptions(
    program
      .command('logout <registry>')
      .description("remove a registry's login from the auth file and credential helper"),
    false,
  ).action(async function (this: Command, registry: string, flags: RegistryFlags) {
    const settings = loadSettings();
    const result = await registryLogout({ registry, access: registryAccessOf(flags, settings), settings });
    printResult(globalOptions(this), result, [
      result.removed
        ? `Removed login credentials for ${result.registry}`
        : `Not logged in to ${result.registry}`,
    ]);
  });
}

/** Standard input as docker reads a secret: one trailing newline (echo adds it) trimmed, the rest verbatim. */
async function readSecret(): Promise<string> {
  return (await readStdin()).replace(/\r?\n$/, '');
}

async function loginOf(
  flags: LoginFlags,
): Promise<{ username: string; password: string } | { identityToken: string }> {
  const given = [
    flags.password !== undefined && '--password',
    flags.passwordStdin && '--password-stdin',
    flags.identityToken !== undefined && '--identity-token',
    flags.identityTokenStdin && '--identity-token-stdin',
  ].filter((name): name is string => typeof name === 'string');
  if (given.length > 1)
    throw new SplinterError('INVALID_ARGUMENT', `${given.join(' and ')} are mutually exclusive`);
  if (flags.identityToken !== undefined || flags.identityTokenStdin) {
    if (flags.username !== undefined)
      throw new SplinterError('INVALID_ARGUMENT', 'an identity token takes no --username');
    if (flags.identityToken !== undefined)
      warn('using --identity-token on the command line is insecure: use --identity-token-stdin');
    const identityToken = flags.identityToken ?? (await readSecret());
    if (identityToken === '') throw new SplinterError('INVALID_ARGUMENT', 'the identity token is empty');
    return { identityToken };
  }
  if (flags.passwordStdin && flags.username === undefined) {
    throw new SplinterError('INVALID_ARGUMENT', 'give --username with --password-stdin');
  }
  if (flags.password !== undefined) {
    warn('using --password on the command line is insecure: use --password-stdin');
    if (flags.username === undefined)
      throw new SplinterError('INVALID_ARGUMENT', 'give --username with --password');
    return { username: flags.username, password: flags.password };
  }
  if (flags.passwordStdin) {
    const password = await readSecret();
    if (password === '') throw new SplinterError('INVALID_ARGUMENT', 'standard input held no password');
    return { username: flags.username!, password };
  }
  if (!process.stdin.isTTY) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      'no terminal to ask for the login: give --username and --password-stdin',
    );
  }
  const username = flags.username ?? (await ask('Username: ', false));
  const password = await ask('Password: ', true);
  return { username, password };
}

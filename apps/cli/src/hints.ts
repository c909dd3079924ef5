import type { ErrorCode } from '@splintertree/errors';

/**
 * The lower layers state facts and put specifics in `details` (`reason` above all); only the CLI knows
 * its flags and commands, so the way out is added here: one line after the error or warning on
 * stderr (`splinter: hint: ...`), and `hint` in the `--json` error.
 */

type Details = Record<string, unknown>;

/**
 * `CODE:reason` for errors, `warning:reason` for warnings the core reports through `warn`. A reason
 * without a row gets no hint: `verification-skipped` names no way out, the user gave the flag.
 */
type HintKey = `${ErrorCode}:${string}` | `warning:${string}`;

const HINTS: Partial<Record<HintKey, (details: Details) => string>> = {
  // patch activate / rollback / push
  'HEAD_CONFLICT:not-descendant': () => 'pass --force to activate it anyway',
  'INVALID_ARGUMENT:version-without-realm': () => 'pass --realm to name a version',
  'warning:newer-drafts': () => 'pass --parent to build on a draft',
  'MOD_UNTRUSTED:no-mod-trust': (d) =>
    `set them with splinter realm trust set --realm ${d.realm} --key PUB, or pass --mod-key PUB`,
  // signed releases
  'RELEASE_MISSING:never-signed': (d) =>
    `activate with --release-key, or run splinter release refresh --realm ${d.realm}`,
  'warning:unsigned-head-move': (d) =>
    `pass --release-key, or run splinter release refresh --realm ${d.realm} after the move`,
  'warning:release-not-published': (d) => `run splinter release publish --realm ${d.realm}`,
  'INVALID_ARGUMENT:key-lists-without-key': () => '--release-keys needs --release-key-file',
  // pulls and installs
  'OUTPUT_EXISTS:not-empty': () => 'pass --replace to replace it',
  'UNPORTABLE_PATH:unportable-version': () =>
    'it was pushed with --allow-unportable, for Linux file systems only',
  // registries
  'REGISTRY_UNREACHABLE:tls-untrusted': () =>
    "give the registry's CA with --ca-file or SPLINTER_CA_FILE, or --insecure to skip verification",
  'REGISTRY_UNAUTHORIZED:login-required': (d) => `run splinter login ${d.registry}`,
  'INVALID_REFERENCE:http-scheme': () =>
    'give it without http:// and add --plain-http (or SPLINTER_PLAIN_HTTP=1), as oras does',
  // keys and the database
  'KEK_MISSING:kek-missing': () => 'splinter kek generate makes one',
  'INVALID_ARGUMENT:same-kek': () => 'give --new-kek-file a KEK other than the configured one',
  'SCHEMA_BEHIND:schema-behind': () => 'run `splinter db migrate` as the schema owner first',
};

/** The hint for an error code (or `warning`) and its details, if the CLI has one. */
export function hintFor(code: ErrorCode | 'warning', details: Details | undefined): string | undefined {
  const reason = details?.reason;
  if (typeof reason !== 'string') return undefined;
  return HINTS[`${code}:${reason}` as HintKey]?.(details ?? {});
}

import { SplinterError } from '@splintertree/errors';
import { type Digest, isDigest } from '@splintertree/oci';

/**
 * Where an artifact lives. Docker's rule tells the two apart: a reference whose first path component
 * has a '.' or a ':' or is `localhost` names a registry (`host[:port]/repository[:tag|@digest]`);
 * anything else (`patches/eu-1:1.0.0`) names a repository in the embedded store under SPLINTER_HOME.
 */
export type Location =
  | { kind: 'registry'; registry: string; repository: string; tag?: string; digest?: Digest }
  | { kind: 'embedded'; repository: string; tag?: string; digest?: Digest };

/** A leading `scheme://` (lower-cased) and what follows it; undefined when there is none. */
function schemeOf(text: string): { name: string; rest: string } | undefined {
  const match = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  return match ? { name: match[1]!.toLowerCase(), rest: text.slice(match[0].length) } : undefined;
}

/**
 * A registry host as `login`, `logout` and `--registry` take it: `host[:port]`. `https://` is
 * accepted and dropped, as `docker login https://host` does (https is the default); `http://` is
 * refused (details.reason `http-scheme`: plain HTTP is a setting), instead of being read as a repository.
 */
export function registryHostOf(value: string, what = 'registry'): string {
  const trimmed = value.trim();
  const scheme = schemeOf(trimmed);
  if (scheme?.name === 'http') {
    throw new SplinterError(
      'INVALID_REFERENCE',
      `${what} ${JSON.stringify(value)}: http:// is not how a registry is given; give host[:port]`,
      { details: { reason: 'http-scheme' } },
    );
  }
  if (scheme && scheme.name !== 'https') {
    throw new SplinterError(
      'INVALID_REFERENCE',
      `${what} ${JSON.stringify(value)}: ${scheme.name}:// is not a registry scheme; give host[:port]`,
    );
  }
  return (scheme?.rest ?? trimmed).replace(/\/+$/, '');
}

const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

function isRegistryHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

export function parseLocation(reference: string): Location {
  const invalid = (why: string, details?: Record<string, unknown>) =>
    new SplinterError('INVALID_REFERENCE', `invalid reference ${JSON.stringify(reference)}: ${why}`, {
      details,
    });
  let rest = reference.trim();
  const scheme = schemeOf(rest);
  if (scheme) {
    // `http://host/repo` would otherwise read as registry "http:" and a repository "/host/repo".
    throw invalid(
      'references take no scheme: give host[:port]/repository[:tag|@digest]',
      scheme.name === 'http' ? { reason: 'http-scheme' } : undefined,
    );
  }
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const candidate = rest.slice(at + 1);
    if (!isDigest(candidate)) throw invalid('the part after @ must be sha256:<64 hex>');
    digest = candidate;
    rest = rest.slice(0, at);
  }
  const firstSlash = rest.indexOf('/');
  const first = firstSlash >= 0 ? rest.slice(0, firstSlash) : rest;
  const isRegistry = firstSlash >= 0 && isRegistryHost(first);
  const registry = isRegistry ? first : undefined;
  let path = isRegistry ? rest.slice(firstSlash + 1) : rest;
  let tag: string | undefined;
  const colon = path.lastIndexOf(':');
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(`tag ${JSON.stringify(tag)} is not a valid tag`);
  }
  if (!REPOSITORY.test(path)) throw invalid('the repository must be lowercase path components');
  const location: Location =
    registry === undefined
      ? { kind: 'embedded', repository: path }
      : { kind: 'registry', registry, repository: path };
  if (tag !== undefined) location.tag = tag;
  if (digest !== undefined) location.digest = digest;
  return location;
}

export function formatLocation(location: Location): string {
  const base =
    location.kind === 'registry' ? `${location.registry}/${location.repository}` : location.repository;
  return `${base}${location.tag ? `:${location.tag}` : ''}${location.digest ? `@${location.digest}` : ''}`;
}

/**
 * `--registry` (or SPLINTERTREE_*_REGISTRY) names a registry and an optional namespace,
 * `host[:port][/path]`; a patch goes to `<namespace>/<realm>`, a mod to `<namespace>/<name>`, and the
 * namespace defaults to `patches` / `mods`.
 */
export function destinationFor(
  base: string | undefined,
  defaultNamespace: 'patches' | 'mods',
  leaf: string,
  version: string,
): Location {
  if (base === undefined)
    return { kind: 'embedded', repository: `${defaultNamespace}/${leaf}`, tag: version };
  const trimmed = registryHostOf(base);
  const slash = trimmed.indexOf('/');
  const host = slash >= 0 ? trimmed.slice(0, slash) : trimmed;
  const namespace = slash >= 0 ? trimmed.slice(slash + 1) : defaultNamespace;
  if (!isRegistryHost(host)) {
    throw new SplinterError(
      'INVALID_REFERENCE',
      `registry ${JSON.stringify(base)} must start with a host: host[:port][/namespace], e.g. localhost:5000/game`,
    );
  }
  const location = parseLocation(`${host}/${namespace}/${leaf}:${version}`);
  return location;
}

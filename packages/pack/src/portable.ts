import { SplinterError } from '@splintertree/errors';

export interface PortabilityProblem {
  /** The offending path: the shortest prefix of an input path that has the problem. */
  path: string;
  reason: string;
  code:
    | 'RESERVED_NAME'
    | 'RESERVED_CHARACTER'
    | 'TRAILING_DOT_OR_SPACE'
    | 'CONTROL_CHARACTER'
    | 'TOO_LONG'
    | 'CASE_COLLISION'
    | 'NORMALIZATION_COLLISION'
    | 'NOT_NFC'
    | 'INVALID_UNICODE'
    | 'EMPTY_COMPONENT'
    | 'DOT_COMPONENT'
    | 'BACKSLASH';
}

export interface PortabilityLimits {
  /** Longest name, in UTF-8 bytes (default 255: ext4 and APFS). */
  maxComponentBytes?: number;
  /** Longest relative path, in UTF-16 units (default 200: fits MAX_PATH under a 59-unit install folder). */
  maxPathChars?: number;
}

export const DEFAULT_MAX_COMPONENT_BYTES = 255;
export const DEFAULT_MAX_PATH_CHARS = 200;
/** Lines of problems the UNPORTABLE_PATH message lists; the error's details hold all of them. */
const MESSAGE_LINES = 20;

/** CON, PRN, AUX, NUL, COM0-9, LPT0-9 (and the superscript ¹²³ forms), CONIN$, CONOUT$. */
const RESERVED_STEM = /^(?:CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9¹²³]|LPT[0-9¹²³])$/;
const RESERVED_CHARACTERS = /[<>:"|?*]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
/** With the `u` flag a surrogate class matches only surrogates that are not half of a pair. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;
/** Path length shown per line of the UNPORTABLE_PATH message. */
const SHOWN_PATH_CHARS = 120;
/** Rounds of caseless folding: two suffice for every code point (U+1E9E ẞ); the bound holds on hostile names. */
const FOLD_ROUNDS = 3;

type Problem = PortabilityProblem['code'];

/**
 * Every problem of a set of relative POSIX paths ('/'-separated) for installing on Windows, macOS and
 * Linux: whether a tree's names can exist, each as itself and each apart from the others, on the players'
 * file systems: NTFS (Windows), APFS (macOS; case-insensitive and normalisation-insensitive by
 * default) and ext4 (Linux). One rule, for push and for pull.
 *
 * Decisions:
 * - Component length: at most 255 UTF-8 bytes. ext4 and APFS count UTF-8 bytes, NTFS UTF-16 units;
 *   a string never has more UTF-16 units than UTF-8 bytes, so the byte count is the binding one.
 * - Path length: at most 200 UTF-16 units (what Windows counts) for the relative path. Windows'
 *   MAX_PATH is 260 units with the terminating NUL, so 200 leaves 59 for the install folder with its
 *   trailing separator (`C:\Program Files\Splinter\Games\Some Game Title\` is 48). The launcher itself
 *   would cope with 32,767 (Node's fs uses `\\?\` paths on Windows), but long paths are off by
 *   default for players, and the game, Explorer, uninstallers and anti-virus tools that are not
 *   long-path aware could not open or delete a file past MAX_PATH.
 * - Case: two names collide when they are equal under canonical caseless matching (NFD, full case
 *   folding, NFD). JavaScript has no case folding, so the fold is `toUpperCase().toLowerCase()` on
 *   NFD, repeated until it no longer changes (twice at most, for U+1E9E ẞ). Checked over every code
 *   point against Unicode's CaseFolding.txt (C+F) it merges everything full folding merges, and
 *   beyond that only dotless ı with I and i, as the simple upper-casing NTFS uses does.
 * - Normalisation: names must be NFC (NOT_NFC), not only apart from each other. APFS treats NFC and
 *   NFD spellings as one name; NTFS and ext4 keep the bytes, so a game that opens `café.txt` (NFC,
 *   as source code and Windows tools write it) does not find a file stored as NFD there. Two
 *   spellings of one name are also reported as a NORMALIZATION_COLLISION, naming the other.
 * - Collisions are checked for every prefix (folder `A/` and folder `a/` collide); each problem is
 *   reported once, on the shortest prefix that has it, not once per file below it.
 */
export function portabilityProblems(
  paths: Iterable<string>,
  limits: PortabilityLimits = {},
): PortabilityProblem[] {
  const maxComponentBytes = limits.maxComponentBytes ?? DEFAULT_MAX_COMPONENT_BYTES;
  const maxPathChars = limits.maxPathChars ?? DEFAULT_MAX_PATH_CHARS;
  const problems: PortabilityProblem[] = [];
  const reported = new Set<string>();
  const report = (path: string, code: Problem, reason: string) => {
    const key = `${code}\0${path}\0${reason}`;
    if (reported.has(key)) return;
    reported.add(key);
    problems.push({ path, code, reason });
  };
  // Every prefix seen, by its NFC and by its caseless spelling, mapped to the first spelling seen.
  const byNormalForm = new Map<string, string>();
  const byCaselessForm = new Map<string, string>();

  for (const path of new Set(paths)) {
    if (path === '') {
      report(path, 'EMPTY_COMPONENT', 'an empty path');
      continue;
    }
    const components = path.split('/');
    let prefix = '';
    let normalPrefix = '';
    let caselessPrefix = '';
    let collided = false;
    let tooLong = false;
    for (const [index, component] of components.entries()) {
      prefix = index === 0 ? component : `${prefix}/${component}`;
      for (const [code, reason] of componentProblems(component, index, maxComponentBytes))
        report(prefix, code, reason);
      if (!tooLong && prefix.length > maxPathChars) {
        tooLong = true;
        report(
          prefix,
          'TOO_LONG',
          `the path is ${prefix.length} UTF-16 units; at most ${maxPathChars} fit Windows' 260 (MAX_PATH) under an install folder`,
        );
      }
      normalPrefix = `${normalPrefix}/${component.normalize('NFC')}`;
      caselessPrefix = `${caselessPrefix}/${caselessForm(component)}`;
      if (collided) continue;
      const sameNormal = byNormalForm.get(normalPrefix);
      const sameCaseless = byCaselessForm.get(caselessPrefix);
      if (sameNormal !== undefined && sameNormal !== prefix) {
        collided = true;
        report(
          prefix,
          'NORMALIZATION_COLLISION',
          `the same name as ${JSON.stringify(sameNormal)} under Unicode normalisation: one entry on macOS, two on Windows and Linux`,
        );
      } else if (sameCaseless !== undefined && sameCaseless !== prefix) {
        collided = true;
        report(
          prefix,
          'CASE_COLLISION',
          `differs only in case from ${JSON.stringify(sameCaseless)}: one entry on a case-insensitive file system (Windows, macOS by default)`,
        );
      }
      if (sameNormal === undefined) byNormalForm.set(normalPrefix, prefix);
      if (sameCaseless === undefined) byCaselessForm.set(caselessPrefix, prefix);
    }
  }
  return problems;
}

/** Throws UNPORTABLE_PATH listing every problem (the first 20 in the message, all in `details.problems`). */
export function assertPortable(paths: Iterable<string>, limits: PortabilityLimits = {}): void {
  const problems = portabilityProblems(paths, limits);
  if (problems.length === 0) return;
  const shown = (path: string) =>
    JSON.stringify(path.length > SHOWN_PATH_CHARS ? `${path.slice(0, SHOWN_PATH_CHARS)}…` : path);
  const lines = problems.slice(0, MESSAGE_LINES).map((p) => `  ${shown(p.path)}: ${p.reason}`);
  if (problems.length > MESSAGE_LINES) lines.push(`  ... and ${problems.length - MESSAGE_LINES} more`);
  const count = problems.length === 1 ? '1 path' : `${problems.length} paths`;
  throw new SplinterError(
    'UNPORTABLE_PATH',
    [`${count} cannot be installed on every platform (Windows, macOS, Linux):`, ...lines].join('\n'),
    { details: { problems } },
  );
}

/** The problems of one name, whatever else the tree holds. */
function componentProblems(
  component: string,
  index: number,
  maxComponentBytes: number,
): Array<[Problem, string]> {
  if (component === '') {
    const where =
      index === 0 ? 'a leading /: the path is absolute' : 'an empty name (a doubled or trailing /)';
    return [['EMPTY_COMPONENT', where]];
  }
  if (component === '.' || component === '..')
    return [['DOT_COMPONENT', `${JSON.stringify(component)} cannot be a name`]];
  const found: Array<[Problem, string]> = [];
  if (component.includes('\\')) found.push(['BACKSLASH', 'a backslash, the path separator on Windows']);
  const reserved = [...new Set(component.match(RESERVED_CHARACTERS))];
  if (reserved.length > 0) {
    const list = reserved.map((c) => JSON.stringify(c)).join(' ');
    found.push(['RESERVED_CHARACTER', `${list}: reserved on Windows (< > : " | ? * cannot be in a name)`]);
  }
  const control = CONTROL_CHARACTER.exec(component)?.[0];
  if (control !== undefined) {
    const code = `U+${control.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
    found.push([
      'CONTROL_CHARACTER',
      `control character ${code} (Windows refuses U+0001-U+001F, every system U+0000; U+007F breaks shells and tools)`,
    ]);
  }
  if (component.endsWith('.') || component.endsWith(' '))
    found.push(['TRAILING_DOT_OR_SPACE', 'ends in a dot or a space, which Windows drops from a name']);
  const stem = component.split('.')[0]?.trimEnd().toUpperCase() ?? '';
  if (RESERVED_STEM.test(stem))
    found.push(['RESERVED_NAME', `${stem} is a device name on Windows, with any extension`]);
  if (UNPAIRED_SURROGATE.test(component)) {
    found.push([
      'INVALID_UNICODE',
      'holds an unpaired UTF-16 surrogate, which is not UTF-8 (APFS refuses it)',
    ]);
  } else if (component.normalize('NFC') !== component) {
    found.push([
      'NOT_NFC',
      `not in Unicode NFC: spell it ${JSON.stringify(component.normalize('NFC'))} (Windows and Linux keep the bytes, so one spelling must be chosen)`,
    ]);
  }
  const bytes = Buffer.byteLength(component, 'utf8');
  if (bytes > maxComponentBytes) {
    found.push([
      'TOO_LONG',
      `a name of ${bytes} UTF-8 bytes (${component.length} UTF-16 units); at most ${maxComponentBytes} bytes fit every platform (ext4 and APFS count UTF-8 bytes, NTFS UTF-16 units)`,
    ]);
  }
  return found;
}

/** The spelling two names share when a case-insensitive, normalisation-insensitive system sees one. */
export function caselessForm(name: string): string {
  let form = name.normalize('NFD');
  for (let round = 0; round < FOLD_ROUNDS; round++) {
    const folded = form.toUpperCase().toLowerCase().normalize('NFD');
    if (folded === form) break;
    form = folded;
  }
  return form;
}

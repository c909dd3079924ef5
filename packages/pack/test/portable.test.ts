import { assertPortable, type PortabilityProblem, portabilityProblems } from '@splintertree/pack';
import { describe, expect, it } from 'vitest';

const codes = (paths: string[], limits = {}) =>
  portabilityProblems(paths, limits).map((p) => [p.path, p.code] as const);

describe('portable paths: one name per entry on Windows, macOS and Linux', () => {
  it('accepts an ordinary game tree, accents and scripts included when they are NFC', () => {
    const tree = [
      'bin/game.exe',
      'data/maps/map-001.dat',
      'data/Maps2/map-001.dat',
      'data/café/naïve.txt',
      'data/日本語/テクスチャ.png',
      'data/😀 smile.txt',
      'data/ leading space is fine.txt',
      'data/.hidden',
      'data/..double-dot prefix',
      'CONSOLE.txt',
      'COM10.txt',
      'LPT.txt',
      'x.con',
      'auxiliary.cfg',
      'nul-island.txt',
      'a'.repeat(200),
    ];
    expect(portabilityProblems(tree)).toEqual([]);
    expect(() => assertPortable(tree)).not.toThrow();
  });

  it('refuses Windows device names with any extension, in any case, wherever they are in the path', () => {
    const devices = ['CON', 'prn', 'Aux', 'NUL', 'COM0', 'com9', 'LPT0', 'lpt9', 'COM¹', 'com²', 'LPT³'];
    for (const device of devices) {
      expect(codes([device]), device).toEqual([[device, 'RESERVED_NAME']]);
      expect(codes([`${device}.txt`]), device).toEqual([[`${device}.txt`, 'RESERVED_NAME']]);
    }
    expect(codes(['CONIN$', 'conout$.log', 'aux.tar.gz', 'nul .txt'])).toEqual([
      ['CONIN$', 'RESERVED_NAME'],
      ['conout$.log', 'RESERVED_NAME'],
      ['aux.tar.gz', 'RESERVED_NAME'],
      ['nul .txt', 'RESERVED_NAME'],
    ]);
    // A folder: reported once, on the folder, not for each file below it.
    expect(codes(['data/aux/a.txt', 'data/aux/b.txt'])).toEqual([['data/aux', 'RESERVED_NAME']]);
    expect(portabilityProblems(['Con.txt'])[0]?.reason).toBe(
      'CON is a device name on Windows, with any extension',
    );
  });

  it('refuses the characters Windows reserves, backslash and control characters', () => {
    for (const c of ['<', '>', ':', '"', '|', '?', '*']) {
      expect(codes([`a${c}b.txt`]), c).toEqual([[`a${c}b.txt`, 'RESERVED_CHARACTER']]);
    }
    expect(portabilityProblems(['c:drive.txt'])[0]?.reason).toBe(
      '":": reserved on Windows (< > : " | ? * cannot be in a name)',
    );
    expect(codes(['back\\slash.txt'])).toEqual([['back\\slash.txt', 'BACKSLASH']]);
    for (const c of ['\u0000', '\u0001', '\u0009', '\u001f', '\u007f']) {
      expect(codes([`a${c}b`]), JSON.stringify(c)).toEqual([[`a${c}b`, 'CONTROL_CHARACTER']]);
    }
    expect(portabilityProblems(['bell\u0007'])[0]?.reason).toMatch(/^control character U\+0007 /);
    expect(codes(['a\u0080b', 'a\u00a0b'])).toEqual([]);
  });

  it('refuses a trailing dot or space, which Windows drops', () => {
    expect(codes(['file.', 'name ', 'dir./x', 'dir ./y', 'ok.txt', ' ok'])).toEqual([
      ['file.', 'TRAILING_DOT_OR_SPACE'],
      ['name ', 'TRAILING_DOT_OR_SPACE'],
      ['dir.', 'TRAILING_DOT_OR_SPACE'],
      ['dir .', 'TRAILING_DOT_OR_SPACE'],
    ]);
    // A name can break several rules at once: each is listed.
    expect(codes(['CON.'])).toEqual([
      ['CON.', 'TRAILING_DOT_OR_SPACE'],
      ['CON.', 'RESERVED_NAME'],
    ]);
  });

  it('refuses empty, absolute, "." and ".." components', () => {
    expect(codes(['', '/abs', 'a//b', 'a/', '.', 'a/./b', '../x', 'a/..'])).toEqual([
      ['', 'EMPTY_COMPONENT'],
      ['', 'EMPTY_COMPONENT'],
      ['a/', 'EMPTY_COMPONENT'],
      ['.', 'DOT_COMPONENT'],
      ['a/.', 'DOT_COMPONENT'],
      ['..', 'DOT_COMPONENT'],
      ['a/..', 'DOT_COMPONENT'],
    ]);
    expect(portabilityProblems(['/abs']).map((p) => p.reason)).toEqual(['a leading /: the path is absolute']);
  });

  it('measures names in UTF-8 bytes and says so; paths in UTF-16 units', () => {
    const wide = { maxPathChars: 1000 }; // names alone, past the path limit
    expect(codes(['a'.repeat(255), 'é'.repeat(127), '😀'.repeat(63)], wide)).toEqual([]);
    expect(codes(['b'.repeat(256)], wide)).toEqual([['b'.repeat(256), 'TOO_LONG']]);
    const accented = 'é'.repeat(128); // 128 UTF-16 units, 256 UTF-8 bytes
    expect(portabilityProblems([accented])).toEqual([
      {
        path: accented,
        code: 'TOO_LONG',
        reason:
          'a name of 256 UTF-8 bytes (128 UTF-16 units); at most 255 bytes fit every platform (ext4 and APFS count UTF-8 bytes, NTFS UTF-16 units)',
      },
    ]);
    expect(codes(['😀'.repeat(64)])).toEqual([['😀'.repeat(64), 'TOO_LONG']]);

    const folder = `${'d'.repeat(99)}/${'e'.repeat(98)}`; // 198 units
    expect(codes([`${folder}/f`, `${folder}/g`])).toEqual([]); // 200 units each
    expect(codes([`${folder}/fg`, `${folder}/hi`])).toEqual([
      [`${folder}/fg`, 'TOO_LONG'],
      [`${folder}/hi`, 'TOO_LONG'],
    ]);
    // Reported on the shortest prefix over the limit: once for a folder, whatever lies below it.
    expect(codes([`${folder}/longer/a`, `${folder}/longer/b`])).toEqual([[`${folder}/longer`, 'TOO_LONG']]);
    expect(portabilityProblems([`${folder}/fg`])[0]?.reason).toBe(
      "the path is 201 UTF-16 units; at most 200 fit Windows' 260 (MAX_PATH) under an install folder",
    );
    expect(codes(['abcdef/ghi'], { maxPathChars: 8, maxComponentBytes: 5 })).toEqual([
      ['abcdef', 'TOO_LONG'],
      ['abcdef/ghi', 'TOO_LONG'],
    ]);
    // Both limits broken by one name: both reasons are listed.
    expect(portabilityProblems(['x'.repeat(300)]).map((p) => p.reason.split(';')[0])).toEqual([
      'a name of 300 UTF-8 bytes (300 UTF-16 units)',
      'the path is 300 UTF-16 units',
    ]);
  });

  it('refuses names that differ only in case, by Unicode case folding, for files and folders', () => {
    expect(codes(['Readme.TXT', 'readme.txt'])).toEqual([['readme.txt', 'CASE_COLLISION']]);
    expect(portabilityProblems(['Readme.TXT', 'readme.txt'])[0]?.reason).toBe(
      'differs only in case from "Readme.TXT": one entry on a case-insensitive file system (Windows, macOS by default)',
    );
    // Folders A and a collide: reported once, on the folder.
    expect(codes(['A/x', 'a/y', 'a/z'])).toEqual([['a', 'CASE_COLLISION']]);
    // A file and a folder of the same name but for case.
    expect(codes(['data', 'DATA/x'])).toEqual([['DATA', 'CASE_COLLISION']]);
    // Beyond ASCII: full folding (ß and SS, ẞ and ß), Greek final sigma, long s, dotless i.
    expect(codes(['straße', 'STRASSE'])).toEqual([['STRASSE', 'CASE_COLLISION']]);
    expect(codes(['ẞ', 'ß'])).toEqual([['ß', 'CASE_COLLISION']]);
    expect(codes(['ΟΔΟΣ', 'οδος'])).toEqual([['οδος', 'CASE_COLLISION']]);
    expect(codes(['\u017f.txt', 'S.txt'])).toEqual([['S.txt', 'CASE_COLLISION']]);
    expect(codes(['fıle', 'FILE'])).toEqual([['FILE', 'CASE_COLLISION']]);
    // Names that only look alike are different names everywhere.
    expect(codes(['e', 'é', 'a/b', 'ab', 'x.txt', 'x.txt'])).toEqual([]);
  });

  it('requires NFC, and names the other spelling when two are one name under normalisation', () => {
    const nfc = 'caf\u00e9';
    const nfd = 'cafe\u0301';
    expect(codes([`${nfd}.txt`])).toEqual([[`${nfd}.txt`, 'NOT_NFC']]);
    expect(portabilityProblems([nfd])[0]?.reason).toBe(
      `not in Unicode NFC: spell it "${nfc}" (Windows and Linux keep the bytes, so one spelling must be chosen)`,
    );
    expect(codes([`${nfc}/menu.txt`, `${nfd}/menu.txt`])).toEqual([
      [nfd, 'NOT_NFC'],
      [nfd, 'NORMALIZATION_COLLISION'],
    ]);
    expect(portabilityProblems([nfc, nfd])[1]?.reason).toBe(
      `the same name as "${nfc}" under Unicode normalisation: one entry on macOS, two on Windows and Linux`,
    );
    // NFD and the upper-case NFC: one name on APFS, which ignores both case and normalisation.
    expect(codes([nfd, 'CAF\u00c9'])).toEqual([
      [nfd, 'NOT_NFC'],
      ['CAF\u00c9', 'CASE_COLLISION'],
    ]);
    expect(codes(['bad\ud800name', 'pair\ud83d\ude00ok'])).toEqual([['bad\ud800name', 'INVALID_UNICODE']]);
  });

  it('throws UNPORTABLE_PATH listing the first 20 problems, all of them in details', () => {
    const bad = Array.from({ length: 30 }, (_, i) => `dir/file-${i}?.txt`);
    const error = thrownBy(() => assertPortable(['ok.txt', ...bad]));
    expect(error).toMatchObject({ code: 'UNPORTABLE_PATH' });
    const lines = error.message.split('\n');
    expect(lines[0]).toBe('30 paths cannot be installed on every platform (Windows, macOS, Linux):');
    expect(lines.slice(1, 21)).toEqual(
      bad
        .slice(0, 20)
        .map((path) => `  "${path}": "?": reserved on Windows (< > : " | ? * cannot be in a name)`),
    );
    expect(lines[21]).toBe('  ... and 10 more');
    expect(lines).toHaveLength(22);
    expect(error.details.problems.map((p) => p.path)).toEqual(bad);

    // A very long path is cut in the message, never in details.
    const long = `${'p/'.repeat(150)}x:y`;
    const cut = thrownBy(() => assertPortable([long]));
    expect(cut.message.split('\n').slice(1)).toEqual([
      expect.stringMatching(/^ {2}"(p\/){60}…": the path is 201 UTF-16 units/),
      expect.stringMatching(/^ {2}"(p\/){60}…": ":": reserved on Windows/),
    ]);
    expect(cut.details.problems.map((p) => p.path)).toEqual([`${'p/'.repeat(100)}p`, long]);
  });
});

function thrownBy(action: () => void): Error & { code: string; details: { problems: PortabilityProblem[] } } {
  try {
    action();
  } catch (error) {
    return error as Error & { code: string; details: { problems: PortabilityProblem[] } };
  }
  throw new Error('expected a throw');
}

/** mulberry32: a small seeded generator, so a failure names the seed that reproduces it. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SAFE_ATOMS = [
  'a',
  'b',
  'Q',
  'z',
  '0',
  '7',
  '-',
  '_',
  ' ',
  '.',
  'é',
  'ß',
  'Σ',
  'ı',
  '日',
  '😀',
  'x.txt',
];
const HAZARDS: Array<[string, PortabilityProblem['code']]> = [
  ['con', 'RESERVED_NAME'],
  ['LPT²', 'RESERVED_NAME'],
  ['a:b', 'RESERVED_CHARACTER'],
  ['q?', 'RESERVED_CHARACTER'],
  ['x\\y', 'BACKSLASH'],
  ['t\u0001', 'CONTROL_CHARACTER'],
  ['end.', 'TRAILING_DOT_OR_SPACE'],
  ['e\u0301', 'NOT_NFC'],
  ['..', 'DOT_COMPONENT'],
  ['', 'EMPTY_COMPONENT'],
  ['w'.repeat(256), 'TOO_LONG'],
];

describe('portable paths: properties over generated trees', () => {
  const pick = <T>(next: () => number, items: readonly T[]): T =>
    items[Math.floor(next() * items.length)] as T;
  /** A name that breaks no rule by itself: safe atoms, not ending in a dot or space, not a device. */
  const safeName = (next: () => number): string => {
    let name = '';
    const length = 1 + Math.floor(next() * 4);
    for (let i = 0; i < length; i++) name += pick(next, SAFE_ATOMS);
    return `${name}k`;
  };
  const tree = (next: () => number): string[] => {
    const folders = Array.from({ length: 1 + Math.floor(next() * 4) }, () => safeName(next));
    return Array.from({ length: 1 + Math.floor(next() * 12) }, () => {
      const depth = Math.floor(next() * 3);
      const parts = Array.from({ length: depth }, () => pick(next, folders));
      return [...parts, safeName(next)].join('/');
    });
  };
  /** The paths of a generated tree that can stand together: the first spelling of each caseless prefix. */
  const portableTree = (next: () => number): string[] => {
    const paths = tree(next);
    const offending = new Set(portabilityProblems(paths).map((p) => p.path));
    return paths.filter((path) => ![...offending].some((bad) => path === bad || path.startsWith(`${bad}/`)));
  };
  const SEEDS = Array.from({ length: 300 }, (_, i) => 0x5eed + i);

  it('what passes keeps passing: any subset, any order', () => {
    for (const seed of SEEDS) {
      const next = random(seed);
      const paths = portableTree(next);
      expect(portabilityProblems(paths), `seed ${seed}`).toEqual([]);
      const subset = paths.filter(() => next() < 0.5);
      expect(portabilityProblems(subset), `seed ${seed}`).toEqual([]);
      expect(portabilityProblems([...paths].reverse()), `seed ${seed}`).toEqual([]);
    }
  });

  it('a case or normalisation twin of any prefix of a passing tree is caught, on that prefix', () => {
    let twins = 0;
    for (const seed of SEEDS) {
      const next = random(seed);
      const paths = portableTree(next);
      const path = pick(next, paths);
      if (path === undefined) continue;
      const parts = path.split('/');
      const at = Math.floor(next() * parts.length);
      const name = parts[at] as string;
      const letter = [...name].findIndex((c) => c.toLowerCase() !== c.toUpperCase());
      if (letter < 0) continue;
      const chars = [...name];
      const c = chars[letter] as string;
      chars[letter] = c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
      const twinName = chars.join('').includes('é') ? chars.join('').replace('é', 'e\u0301') : chars.join('');
      const twin = [...parts.slice(0, at), twinName, ...parts.slice(at + 1)].join('/');
      const prefix = twin
        .split('/')
        .slice(0, at + 1)
        .join('/');
      if (paths.includes(twin)) continue;
      twins++;
      const found = portabilityProblems([...paths, twin]);
      expect(
        found.some(
          (p) => p.path === prefix && (p.code === 'CASE_COLLISION' || p.code === 'NORMALIZATION_COLLISION'),
        ),
        `seed ${seed}: ${JSON.stringify(twin)} beside ${JSON.stringify(paths)}: ${JSON.stringify(found)}`,
      ).toBe(true);
    }
    expect(twins).toBeGreaterThan(SEEDS.length / 2);
  });

  it('a hazard put into any name of a passing tree is reported on the prefix that ends there', () => {
    for (const seed of SEEDS) {
      const next = random(seed);
      const paths = portableTree(next);
      const path = pick(next, paths);
      if (path === undefined) continue;
      const [hazard, code] = pick(next, HAZARDS);
      const parts = path.split('/');
      const at = Math.floor(next() * parts.length);
      parts[at] = hazard;
      const broken = parts.join('/');
      const prefix = parts.slice(0, at + 1).join('/');
      const found = portabilityProblems([...paths, broken]);
      expect(
        found.some((p) => p.code === code && p.path === prefix),
        `seed ${seed}: ${JSON.stringify(broken)}: ${JSON.stringify(found)}`,
      ).toBe(true);
      // Order does not change which rules a name breaks, only which of two twins is named first.
      const rules = (list: string[]) =>
        portabilityProblems(list)
          .filter((p) => p.code !== 'CASE_COLLISION' && p.code !== 'NORMALIZATION_COLLISION')
          .map((p) => `${p.code} ${p.path}`)
          .sort();
      expect(rules([broken, ...paths].reverse()), `seed ${seed}`).toEqual(rules([...paths, broken]));
    }
  });
});

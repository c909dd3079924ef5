import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OciLayoutTarget } from '@splintertree/oci';
import {
  type BaseVersion,
  checkTree,
  decodeIndex,
  decodeRecord,
  encodeIndex,
  type IndexEntry,
  installTree,
  type KeyRing,
  PackCache,
  publishTree,
  readIndex,
  type Selection,
} from '@splintertree/pack';
import { generatePatchKey, keyIdOf } from '@splintertree/seal';
import { errorCodeOf } from '@splintertree/testkit';
import { describe, expect, it } from 'vitest';
import { makeTree, publishInto, snapshot, tempDir } from './helpers.js';

/** A publisher and a client sharing one real OCI layout store on disk. */
async function world() {
  const store = await OciLayoutTarget.open(await tempDir('store'));
  const client = { cache: new PackCache(await tempDir('packs')) };
  const publish = async (dir: string, base?: BaseVersion, key?: Uint8Array) => {
    const { published, entries } = await publishInto(store, client.cache, dir, {
      base,
      key,
      keys: ring(key),
      tagRules: [{ tag: 'locale:deDE', patterns: ['**/deDE/**'] }],
    });
    return { ...published, entries, version: { root: published.root, entries } as BaseVersion };
  };
  const install = async (
    version: BaseVersion,
    output: string,
    options: { keys?: KeyRing; previous?: IndexEntry[]; selection?: Selection } = {},
  ) =>
    installTree({
      root: version.root,
      entries: version.entries,
      keys: options.keys ?? new Map(),
      cache: client.cache,
      remote: store,
      output,
      replace: true,
      selection: options.selection,
      previous: options.previous ? { entries: options.previous, installedAt: Date.now() } : undefined,
      concurrency: 2,
    });
  return { store, client, publish, install };
}

function ring(key: Uint8Array | undefined): KeyRing {
  return new Map(key ? [[keyIdOf(key), key]] : []);
}

describe('chunked artifacts', () => {
  it('installs exactly the tree that was published', async () => {
    const { publish, install } = await world();
    const tree = await tempDir('tree');
    await makeTree(tree, { largeBytes: 3 * 1024 * 1024 });
    const v1 = await publish(tree);
    const output = join(await tempDir('out'), 'game');
    await install(v1.version, output);
    expect(await snapshot(output)).toEqual(await snapshot(tree));
  });

  it('a 1 MiB insertion in the middle of a 16 MiB file adds about 1 MiB of records', async () => {
    const { publish, install } = await world();
    const tree = await tempDir('tree');
    const original = randomBytes(16 * 1024 * 1024);
    await writeFile(join(tree, 'archive.pak'), original);
    const v1 = await publish(tree);
    const inserted = Buffer.concat([
      original.subarray(0, 8 << 20),
      randomBytes(1 << 20),
      original.subarray(8 << 20),
    ]);
    await writeFile(join(tree, 'archive.pak'), inserted);
    const v2 = await publish(tree, v1.version);
    expect(v2.stats.newRecordBytes).toBeGreaterThan(1 << 20);
    expect(v2.stats.newRecordBytes).toBeLessThan((1 << 20) + 3 * 256 * 1024);
    const output = join(await tempDir('out'), 'game');
    await install(v1.version, output);
    const update = await install(v2.version, output, { previous: v1.entries });
    expect((await readFile(join(output, 'archive.pak'))).equals(inserted)).toBe(true);
    expect(update.fetch.bytes).toBeLessThan((1 << 20) + 3 * 256 * 1024);
  });

  it('an unchanged tree publishes no new chunks, and unchanged files are linked, not rewritten', async () => {
    const { publish, install } = await world();
    const tree = await tempDir('tree');
    await makeTree(tree);
    const v1 = await publish(tree);
    const again = await publish(tree, v1.version);
    expect(again.stats.newChunks).toBe(0);
    const output = join(await tempDir('out'), 'game');
    await install(v1.version, output);
    const before = await stat(join(output, 'data', 'big.pak'));
    await appendFile(join(tree, 'bin', 'game'), 'echo patched\n');
    const v2 = await publish(tree, v1.version);
    const result = await install(v2.version, output, { previous: v1.entries });
    expect(result.kept).toBe(result.files - 1);
    expect((await stat(join(output, 'data', 'big.pak'))).ino).toBe(before.ino);
    expect(await snapshot(output)).toEqual(await snapshot(tree));
  });

  it('rebuilds an installed file a player edited instead of keeping it', async () => {
    const { publish, install } = await world();
    const tree = await tempDir('tree');
    await makeTree(tree);
    const v1 = await publish(tree);
    const output = join(await tempDir('out'), 'game');
    await install(v1.version, output);
    await writeFile(join(output, 'data', 'big.pak'), 'edited by a player');
    const healed = await install(v1.version, output, { previous: v1.entries });
    expect(healed.kept).toBeLessThan(healed.files);
    expect(await snapshot(output)).toEqual(await snapshot(tree));
  });

  it('installs the common files plus the chosen locale, and a later locale fetches only its files', async () => {
    const { publish, install } = await world();
    const tree = await tempDir('tree');
    await mkdir(join(tree, 'text', 'deDE'), { recursive: true });
    await mkdir(join(tree, 'text', 'frFR'), { recursive: true });
    await writeFile(join(tree, 'common.bin'), randomBytes(300_000));
    await writeFile(join(tree, 'text', 'deDE', 'strings.bin'), randomBytes(200_000));
    const v1 = await publish(tree);
    const output = join(await tempDir('out'), 'game');
    const english = await install(v1.version, output, { selection: { locale: 'enUS' } });
    // The tagged folder goes with its files.
    expect(Object.keys(await snapshot(output)).sort()).toEqual(['common.bin', 'text', 'text/frFR']);
    expect(english.fetch.bytes).toBeLessThan(300_000 + 20_000);
    const german = await install(v1.version, output, { selection: { locale: 'deDE' }, previous: v1.entries });
    expect(await snapshot(output)).toEqual(await snapshot(tree));
    expect(german.fetch.bytes).toBeGreaterThan(190_000);
    expect(german.fetch.bytes).toBeLessThan(200_000 + 20_000);
    expect(german.kept).toBe(1);
  });

  it('seals records and the index of a preload: nothing opens without the key, a swapped record fails', async () => {
    const { publish, install, client, store } = await world();
    const tree = await tempDir('tree');
    await makeTree(tree);
    const key = generatePatchKey();
    const v1 = await publish(tree, undefined, key);
    expect(v1.root.packs.every((pack) => pack.keyId === keyIdOf(key))).toBe(true);
    const output = join(await tempDir('out'), 'game');
    expect(await errorCodeOf(install(v1.version, output))).toBe('KEY_REQUIRED');
    expect(
      await errorCodeOf(
        readIndex(v1.root, {
          cache: new PackCache(await tempDir('c')),
          remote: store,
          keys: new Map(),
          concurrency: 1,
        }),
      ),
    ).toBe('KEY_REQUIRED');
    await install(v1.version, output, { keys: ring(key) });
    expect(await snapshot(output)).toEqual(await snapshot(tree));
    const file = v1.entries.find(
      (e): e is Extract<IndexEntry, { type: 'file' }> => e.type === 'file' && e.chunks.length > 1,
    )!;
    const [a, b] = file.chunks as [(typeof file.chunks)[0], (typeof file.chunks)[0]];
    const pack = v1.root.packs.find((p) => p.number === b.pack)!;
    const recordOfB = await client.cache.read(pack.digest, b.offset, b.storedLength);
    expect(await errorCodeOf(decodeRecord({ ...a, storedLength: b.storedLength }, recordOfB, key))).toBe(
      'DECRYPTION_FAILED',
    );
    expect((await decodeRecord(b, recordOfB, key)).byteLength).toBe(b.plainLength);
  });

  it('compacts packs whose records are mostly dead, so a fresh install stays near the tree size', async () => {
    const { publish, install } = await world();
    const tree = await tempDir('tree');
    let version: BaseVersion | undefined;
    let rewritten = 0;
    for (let n = 0; n < 6; n += 1) {
      // Each version keeps a small stable file and replaces most of the rest.
      if (n === 0) await writeFile(join(tree, 'stable.bin'), randomBytes(512 * 1024));
      await writeFile(join(tree, 'churn.bin'), randomBytes(2 * 1024 * 1024));
      const published = await publish(tree, version);
      version = published.version;
      // The churned file is all that is new; the stable file's chunks moved, they are not new.
      if (n > 0) expect(published.stats.newRecordBytes).toBeLessThan(2.1 * 1024 * 1024);
      rewritten += published.stats.rewrittenBytes;
    }
    expect(rewritten).toBeGreaterThanOrEqual(512 * 1024);
    const last = version!;
    const referenced = last.root.packs.reduce((sum, p) => sum + p.size, 0);
    expect(referenced).toBeLessThan(2.5 * 1024 * 1024 * 1.1);
    const output = join(await tempDir('out'), 'game');
    const fresh = await install(last, output);
    expect(fresh.fetch.bytes).toBeLessThan(2.5 * 1024 * 1024 * 1.1);
  });
});

describe('the index', () => {
  it('round-trips and refuses a truncated stream', () => {
    const entries: IndexEntry[] = [
      { type: 'directory', path: 'a', tags: [] },
      {
        type: 'file',
        path: 'a/b',
        executable: true,
        tags: ['locale:deDE'],
        size: 0,
        digest: Buffer.alloc(32, 1),
        chunks: [],
      },
      { type: 'symlink', path: 'c', target: 'a/b', tags: [] },
    ];
    const bytes = encodeIndex(entries);
    expect(decodeIndex(bytes)).toEqual(entries);
    expect(() => decodeIndex(bytes.subarray(0, bytes.byteLength - 1))).toThrow(/ends in the middle/);
  });
});

describe('hostile trees are refused before anything is written', () => {
  const link = (path: string, target: string): IndexEntry => ({ type: 'symlink', path, target, tags: [] });
  const dir = (path: string): IndexEntry => ({ type: 'directory', path, tags: [] });
  const file = (path: string): IndexEntry => ({
    type: 'file',
    path,
    executable: false,
    tags: [],
    size: 0,
    digest: Buffer.alloc(32),
    chunks: [],
  });
  const refused = (entries: IndexEntry[]) => errorCodeOf(Promise.resolve().then(() => checkTree(entries)));

  it.each([
    ['q -> . then p -> q/..', [link('q', '.'), link('p', 'q/..')]],
    ['p -> q/.. listed before q -> .', [link('p', 'q/..'), link('q', '.')]],
    ['d/q -> .. then d/p -> q/../../x', [dir('d'), link('d/q', '..'), link('d/p', 'q/../../x')]],
    [
      'a chain through nested folders to /etc',
      [dir('a'), dir('a/b'), link('a/b/up', '../..'), link('a/x', 'b/up/../etc/passwd')],
    ],
    ['an absolute target', [link('abs', '/etc/passwd')]],
    ['a loop', [link('x', 'y'), link('y', 'x')]],
    ['an empty target (found by the property test)', [link('a', '')]],
  ])('%s', async (_name, entries) => {
    expect(await refused(entries)).toBe('UNSAFE_LINK');
  });

  it('refuses entries below a symlink or a file, repeated paths and unsafe paths', async () => {
    expect(await refused([link('l', 'd'), dir('d'), file('l/x')])).toBe('UNSAFE_LINK');
    expect(await refused([file('f'), file('f/x')])).toBe('UNSAFE_LINK');
    expect(await refused([file('f'), file('f')])).toBe('UNSAFE_PATH');
    expect(await refused([file('../x')])).toBe('UNSAFE_PATH');
    expect(await refused([file('a\\b')])).toBe('UNSAFE_PATH');
    // The installer's redo journals live there (see redo.ts): an index may not name it.
    expect(await refused([dir('.splinter-redo'), file('.splinter-redo/00000000.redo')])).toBe('UNSAFE_PATH');
    expect(await refused([file('.splinter-redo')])).toBe('UNSAFE_PATH');
    // The same folder on NTFS, APFS or exFAT: case and Unicode case folding (U+017F folds to s).
    expect(await refused([file('.Splinter-Redo')])).toBe('UNSAFE_PATH');
    expect(await refused([dir('.\u017Fplinter-redo'), file('.\u017Fplinter-redo/1.redo')])).toBe(
      'UNSAFE_PATH',
    );
  });

  it('accepts links that stay inside, through other links', () => {
    expect(() =>
      checkTree([dir('d'), link('d/q', '..'), link('d/p', 'q/d'), link('top', 'd/p')]),
    ).not.toThrow();
  });
});

describe('push refuses what a player could not install', () => {
  it('lists every unportable path before anything is packed, and --allow-unportable still refuses what no client installs', async () => {
    const tree = await tempDir('tree');
    await writeFile(join(tree, 'Readme.TXT'), 'a');
    await writeFile(join(tree, 'readme.txt'), 'b');
    await writeFile(join(tree, 'aux.txt'), 'c');
    let packs = 0;
    const push = (portable: boolean) =>
      publishTree({ dir: tree, workDir: tree, portable, onPack: () => (packs += 1) });
    const error = await push(true).catch((e: Error & { code?: string }) => e);
    expect((error as { code?: string }).code).toBe('UNPORTABLE_PATH');
    expect((error as Error).message).toMatch(/aux\.txt/);
    expect((error as Error).message).toMatch(/readme\.txt|Readme\.TXT/);
    expect(packs).toBe(0);
    const work = await tempDir('work');
    await expect(
      publishTree({ dir: tree, workDir: work, portable: false, onPack: () => undefined }),
    ).resolves.toBeDefined();
    await writeFile(join(tree, 'back\\slash.txt'), 'd');
    expect(
      await errorCodeOf(publishTree({ dir: tree, workDir: work, portable: false, onPack: () => undefined })),
    ).toBe('UNSAFE_PATH');
  });
});

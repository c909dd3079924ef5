import { mkdir, readdir, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { isSplinterError } from '@splintertree/errors';
import { OciLayoutTarget } from '@splintertree/oci';
import { type IndexEntry, type IndexRoot, installTree, PackCache } from '@splintertree/pack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { publishInto, snapshot, tempDir } from './helpers.js';

type FileEntry = Extract<IndexEntry, { type: 'file' }>;

/** Codes a refused hostile tree may fail with: each a one-line answer, never INTERNAL or a raw errno. */
const REFUSALS = ['UNSAFE_PATH', 'UNSAFE_LINK', 'NAME_TOO_LONG', 'OUTPUT_EXISTS'];

/**
 * Where a path lands once every symlink on it is followed: the real path of its longest existing
 * prefix, then the rest lexically (a missing component is no link, and may be created later).
 */
async function landing(path: string): Promise<string> {
  let existing = path;
  const rest: string[] = [];
  for (;;) {
    try {
      return join(await realpath(existing), ...rest);
    } catch {
      rest.unshift(basename(existing));
      existing = dirname(existing);
    }
  }
}

/** Fails unless every symlink of the installed tree resolves inside it. */
async function expectLinksInside(output: string): Promise<void> {
  const root = await realpath(output);
  for (const [path, kind] of Object.entries(await snapshot(output))) {
    if (!kind.startsWith('link ')) continue;
    const target = await readlink(join(output, path));
    expect(isAbsolute(target), `${path} -> ${target}`).toBe(false);
    const lands = await landing(join(dirname(join(output, path)), target));
    expect(lands === root || lands.startsWith(root + sep), `${path} -> ${target} lands at ${lands}`).toBe(
      true,
    );
  }
}

/** Components that make traversal, self-reference and collisions likely. */
const component = fc.constantFrom('a', 'b', 'q', '.', '..', '', 'x y', 'A');
const relative = fc.array(component, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('/'));

describe('install against random hostile link graphs and entry orders', () => {
  it('never creates or changes anything outside the output, which ends complete or as it was', async () => {
    // Real records to point file entries at: three files published once.
    const store = await OciLayoutTarget.open(await tempDir('prop-store'));
    const source = await tempDir('prop-tree');
    await writeFile(join(source, 'one'), 'first file\n');
    await writeFile(join(source, 'two'), Buffer.alloc(70_000, 7));
    await writeFile(join(source, 'three'), '');
    const cache = new PackCache(await tempDir('prop-packs'));
    const { published, entries: base } = await publishInto(store, cache, source);
    const files = base.filter((e): e is FileEntry => e.type === 'file');

    const sandbox = await tempDir('prop-sandbox');
    const outside = join(sandbox, 'outside');
    const parent = join(sandbox, 'out');
    const output = join(parent, 'game');
    await mkdir(join(outside, 'secret'), { recursive: true });
    await writeFile(join(outside, 'victim'), 'do not touch\n');
    await writeFile(join(outside, 'secret', 'key'), 'k\n');
    await mkdir(parent, { recursive: true });

    const target = fc.oneof(
      relative,
      fc.constantFrom(
        '/etc/passwd',
        outside,
        join(outside, 'victim'),
        '../../outside',
        '..',
        '.',
        'q/..',
        'C:x',
      ),
    );
    const entry: fc.Arbitrary<IndexEntry> = fc.oneof(
      fc
        .record({ path: relative, file: fc.nat(files.length - 1) })
        .map(({ path, file }): IndexEntry => ({ ...files[file]!, path })),
      relative.map((path): IndexEntry => ({ type: 'directory', path, tags: [] })),
      fc
        .record({ path: relative, target })
        .map(({ path, target: to }): IndexEntry => ({ type: 'symlink', path, target: to, tags: [] })),
    );

    const install = (entries: IndexEntry[], replace: boolean, root: IndexRoot = published.root) =>
      installTree({ root, entries, keys: new Map(), cache, remote: store, output, replace, concurrency: 3 });

    const before = await snapshot(outside);
    let installed = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { maxLength: 8 }), fc.boolean(), async (entries, existing) => {
        await rm(output, { recursive: true, force: true });
        if (existing) await install(base, false);
        const previous = existing ? await snapshot(output) : undefined;
        const outcome = await install(entries, true).then(
          () => undefined,
          (error: unknown) => error,
        );
        // Nothing outside the output changed, and nothing of the run is left beside it.
        expect(await snapshot(outside)).toEqual(before);
        const beside = await readdir(parent);
        if (outcome === undefined) {
          installed += 1;
          expect(beside).toEqual(['game']);
          // Complete: every entry is there as listed.
          const tree = await snapshot(output);
          for (const e of entries) {
            const key = e.path.split('/').join('/');
            if (e.type === 'directory') expect(tree[key]).toBe('dir');
            else if (e.type === 'symlink') expect(tree[key]).toBe(`link ${e.target}`);
            else expect(tree[key]).toMatch(/^file /);
          }
          expect(Object.keys(tree).length).toBeGreaterThanOrEqual(new Set(entries.map((e) => e.path)).size);
          await expectLinksInside(output);
        } else {
          refused += 1;
          expect(isSplinterError(outcome) && REFUSALS.includes(outcome.code), String(outcome)).toBe(true);
          expect((outcome as Error).message).not.toContain('\n');
          // As it was: the previous tree whole, or no output at all.
          if (previous) expect(await snapshot(output)).toEqual(previous);
          else expect(beside).toEqual([]);
        }
      }),
      {
        numRuns: 400,
        interruptAfterTimeLimit: 4000,
        markInterruptAsFailure: false,
        seed: Number(process.env.SPLINTER_TEST_FC_SEED ?? Date.now() % 2 ** 31),
      },
    );
    // The generator reaches both outcomes (else the property proves little).
    expect(installed).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });
});

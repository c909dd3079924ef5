import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyRedo, REDO_FOLDER, RedoJournal, type RedoPlan } from '../src/redo.js';
import { tempDir } from './helpers.js';

/** A published tree holding `file.bin` (64 KiB) and one committed journal for `plan`. */
async function treeWithJournal(plan: RedoPlan, data: Buffer) {
  const output = await tempDir('redo');
  const original = randomBytes(64 * 1024);
  await writeFile(join(output, 'file.bin'), original);
  const journal = await RedoJournal.create(output, 0, plan);
  await journal.append(data);
  await journal.commit();
  const [name] = await readdir(join(output, REDO_FOLDER));
  return { output, original, journal: join(output, REDO_FOLDER, name!) };
}

describe('redo journals', () => {
  it('apply their bytes, set the size, and go', async () => {
    const patch = randomBytes(200);
    const { output, original } = await treeWithJournal(
      {
        path: 'file.bin',
        size: 64 * 1024 + 100,
        writes: [
          { position: 1000, length: 100 },
          { position: 64 * 1024, length: 100 },
        ],
      },
      patch,
    );
    expect(applyRedo(output)).toEqual(['file.bin']);
    const after = await readFile(join(output, 'file.bin'));
    expect(after.byteLength).toBe(64 * 1024 + 100);
    expect(after.subarray(1000, 1100).equals(patch.subarray(0, 100))).toBe(true);
    expect(after.subarray(64 * 1024).equals(patch.subarray(100))).toBe(true);
    expect(after.subarray(0, 1000).equals(original.subarray(0, 1000))).toBe(true);
    expect(await readdir(output)).toEqual(['file.bin']);
    // Nothing is left to apply again.
    expect(applyRedo(output)).toEqual([]);
  });

  it('refuse to commit fewer bytes than planned', async () => {
    const output = await tempDir('redo');
    const journal = await RedoJournal.create(output, 0, {
      path: 'file.bin',
      size: 10,
      writes: [{ position: 0, length: 10 }],
    });
    await journal.append(Buffer.alloc(4));
    await expect(journal.commit()).rejects.toMatchObject({ code: 'SIZE_MISMATCH' });
  });

  it('that are torn, name a missing file or a path outside are dropped, writing nothing', async () => {
    const torn = await treeWithJournal(
      { path: 'file.bin', size: 64 * 1024, writes: [{ position: 0, length: 4096 }] },
      randomBytes(4096),
    );
    await truncate(torn.journal, (await stat(torn.journal)).size - 1);
    expect(applyRedo(torn.output)).toEqual([]);
    expect((await readFile(join(torn.output, 'file.bin'))).equals(torn.original)).toBe(true);
    expect(await readdir(torn.output)).toEqual(['file.bin']);

    const missing = await treeWithJournal(
      { path: 'gone/file.bin', size: 10, writes: [{ position: 0, length: 10 }] },
      randomBytes(10),
    );
    expect(applyRedo(missing.output)).toEqual([]);
    expect(await readdir(missing.output)).toEqual(['file.bin']);

    const outside = await treeWithJournal(
      { path: '../escape.bin', size: 10, writes: [{ position: 0, length: 10 }] },
      randomBytes(10),
    );
    expect(applyRedo(outside.output)).toEqual([]);
    expect(await readdir(join(outside.output, '..'))).not.toContain('escape.bin');
  });

  it('that cannot apply (a folder, a size past what they write) are dropped, not kept to fail every install', async () => {
    const folder = await treeWithJournal(
      { path: 'data', size: 10, writes: [{ position: 0, length: 10 }] },
      randomBytes(10),
    );
    await mkdir(join(folder.output, 'data'));
    expect(applyRedo(folder.output)).toEqual([]);
    expect((await readdir(folder.output)).sort()).toEqual(['data', 'file.bin']);

    const huge = await treeWithJournal(
      { path: 'file.bin', size: Number.MAX_SAFE_INTEGER, writes: [{ position: 0, length: 10 }] },
      randomBytes(10),
    );
    expect(applyRedo(huge.output)).toEqual([]);
    expect((await readFile(join(huge.output, 'file.bin'))).equals(huge.original)).toBe(true);
    expect(await readdir(huge.output)).toEqual(['file.bin']);
  });
});

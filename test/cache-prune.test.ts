import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunningRegistry, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, splinterCli, type TransferJson, tempDir } from './support.js';

/** Bytes a folder's files take on disk (allocated blocks: sparse packs count what they hold). */
async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const info = await stat(join(dir, name));
    if (info.isFile()) total += info.blocks * 512;
  }
  return total;
}

describe('splinter cache prune keeps what the last installed versions and staged preloads need', () => {
  let work: string;
  let registry: RunningRegistry;
  let operator: Record<string, string>;
  let player: Record<string, string>;
  const trees: string[] = [];
  beforeAll(async () => {
    work = await tempDir('prune');
    registry = await startRegistry();
    operator = { SPLINTER_HOME: join(work, 'operator'), SPLINTERTREE_MOD_REGISTRY: registry.host };
    player = { SPLINTER_HOME: join(work, 'player') };
    const common = randomBytes(4 * 1024 * 1024);
    for (let v = 1; v <= 5; v += 1) {
      const tree = join(work, `v${v}`);
      await mkdir(join(tree, 'data'), { recursive: true });
      await writeFile(join(tree, 'data', 'common.bin'), common);
      await writeFile(join(tree, 'data', 'level.bin'), randomBytes(3 * 1024 * 1024));
      await writeFile(join(tree, 'game.ini'), `version=${v}\n`);
      trees.push(tree);
    }
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const json = async (args: string[], env: Record<string, string>) => {
    const result = await splinterCli([...args, '--json'], env);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout);
  };
  const reference = (v: number) => `${registry.host}/mods/game:${v}`;
  const pull = async (v: number) =>
    (
      await json(
        [
          'mod',
          'pull',
          reference(v),
          '--output',
          join(work, 'game'),
          '--replace',
          '--plain-http',
          '--insecure-skip-verify',
        ],
        player,
      )
    ).transfer as TransferJson;

  it('drops what no kept version needs, and a rollback to a kept version still downloads nothing', async () => {
    for (let v = 1; v <= 5; v += 1) {
      const base = v > 1 ? ['--base', reference(v - 1)] : [];
      await json(
        ['mod', 'push', trees[v - 1]!, '--name', 'game', '--version', `${v}`, '--plain-http', ...base],
        operator,
      );
    }
    for (let v = 1; v <= 4; v += 1) expect((await pull(v)).bytes).toBeGreaterThan(0);
    // Version 5 is staged, not installed (as a launcher stages a preload).
    const staged = await json(
      ['mod', 'fetch', reference(5), '--plain-http', '--insecure-skip-verify'],
      player,
    );
    expect(staged.transfer.bytes).toBeGreaterThan(0);

    const packs = join(player.SPLINTER_HOME!, 'packs');
    const before = await diskBytes(packs);
    const pruned = await json(['cache', 'prune', '--keep', '2'], player);
    const after = await diskBytes(packs);
    // Four versions of 7 MiB sharing 4 MiB, plus a staged one: 4 + 5 x 3 MiB of records cached before;
    // after, what 3, 4 and 5 need: 4 + 3 x 3 MiB.
    console.log(`cache packs: ${before} bytes before prune --keep 2, ${after} after`, pruned);
    expect(pruned.kept.map((v: { kind: string }) => v.kind)).toEqual(['staged', 'installed', 'installed']);
    expect(pruned.before).toBeGreaterThan(pruned.after);
    expect(after).toBeLessThan(before - 5 * 1024 * 1024);
    expect(after).toBeGreaterThan(4 * 1024 * 1024 + 3 * 3 * 1024 * 1024);
    expect(pruned.removedPacks + pruned.rewrittenPacks).toBeGreaterThan(0);

    // Rolling back to the previous version, re-installing the current one and installing the staged
    // one cost nothing; the pruned first version is downloaded again.
    expect((await pull(3)).bytes).toBe(0);
    expect(await snapshot(join(work, 'game'))).toEqual(await snapshot(trees[2]!));
    expect((await pull(4)).bytes).toBe(0);
    expect((await pull(5)).bytes).toBe(0);
    const again = await pull(1);
    expect(again.bytes).toBeGreaterThanOrEqual(3 * 1024 * 1024);
    expect(again.bytes).toBeLessThan(4 * 1024 * 1024);
    expect(await snapshot(join(work, 'game'))).toEqual(await snapshot(trees[0]!));

    // A home whose installs predate its records is not pruned blind (launcher sync then skips pruning).
    await rm(join(player.SPLINTER_HOME!, 'retained.json'));
    const blind = await splinterCli(['cache', 'prune', '--json'], player);
    expect(blind.code).toBe(2);
    expect(JSON.parse(blind.stdout).error.details).toEqual({ reason: 'unrecorded-installs' });
    expect(await diskBytes(packs)).toBeGreaterThan(0);

    const bad = await splinterCli(['cache', 'prune', '--keep', '0'], player);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^splinter: INVALID_ARGUMENT: --keep must be a whole number >= 1/);
  }, 240_000);
});

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');

async function packages(): Promise<string[]> {
  const names: string[] = [];
  for (const parent of ['packages', 'apps']) {
    for (const folder of (await readdir(join(ROOT, parent))).sort()) {
      const manifest = JSON.parse(await readFile(join(ROOT, parent, folder, 'package.json'), 'utf8')) as {
        name: string;
        exports?: Record<string, unknown>;
      };
      if (manifest.exports?.['.']) names.push(manifest.name);
    }
  }
  return names;
}

// Each package's public surface is a contract: a name added or dropped shows here, in review, as a
// change to test/exports/<package>.txt (`npx vitest run test/exports.test.ts -u` rewrites them).
describe('public surfaces', async () => {
  for (const name of await packages()) {
    it(`${name} exports exactly its pinned names`, async () => {
      const module = (await import(name)) as Record<string, unknown>;
      const surface = Object.keys(module)
        .sort()
        .map((key) => `${key}: ${typeof module[key]}`)
        .join('\n');
      await expect(`${surface}\n`).toMatchFileSnapshot(join('exports', `${name.split('/')[1]}.txt`));
    });
  }
});

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Vitest global setup. Tests import workspace packages from their TypeScript sources, but some code
 * runs built: the CLI the end-to-end tests spawn, and pack's group worker thread. A build older than
 * its sources would test yesterday's code, so this refuses to start (`npm test` builds first).
 */
export default async function assertBuildIsFresh(): Promise<void> {
  const root = join(import.meta.dirname, '..');
  const stale: string[] = [];
  for (const area of ['packages', 'apps']) {
    for (const name of await readdir(join(root, area))) {
      const sources = join(root, area, name, 'src');
      const names = await readdir(sources, { recursive: true }).catch(() => []);
      for (const source of names.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))) {
        const built = join(root, area, name, 'dist', source.replace(/\.ts$/, '.js'));
        const [from, to] = await Promise.all([
          stat(join(sources, source)),
          stat(built).catch(() => undefined),
        ]);
        if (to === undefined || to.mtimeMs < from.mtimeMs) stale.push(`${area}/${name}/src/${source}`);
      }
    }
  }
  if (stale.length > 0) {
    throw new Error(
      `the build is missing or older than ${stale.length} source file(s), ${stale[0]} first: run npm run build`,
    );
  }
}

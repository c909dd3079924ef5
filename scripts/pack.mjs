// Packs every published workspace (all but the private ones) into one folder: `npm run pack -- DIR`.
// `npm pack -ws` would pack the private test kit too.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const destination = resolve(process.argv[2] ?? 'packs');
const published = ['packages', 'apps'].flatMap((parent) =>
  readdirSync(join(root, parent))
    .map((name) => join(parent, name))
    .filter((folder) => !JSON.parse(readFileSync(join(root, folder, 'package.json'), 'utf8')).private),
);
mkdirSync(destination, { recursive: true });
execFileSync(
  'npm',
  ['pack', '--silent', '--pack-destination', destination, ...published.flatMap((f) => ['-w', f])],
  {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  },
);

// npm packs only files inside the package folder; the one LICENSE lives at the root.
import { copyFileSync, rmSync } from 'node:fs';

const root = new URL('../LICENSE', import.meta.url);
if (process.argv[2] === 'copy') copyFileSync(root, 'LICENSE');
else rmSync('LICENSE', { force: true });

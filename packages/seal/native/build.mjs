// Builds the AES-GCM accelerator (build/Release/seal.node) with node-gyp against the headers of the node
// that runs this script, never downloaded ones. Without a compiler or headers it warns and leaves the
// package on node:crypto; under CI=true the seal tests then fail, since CI must exercise the native path.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const nodeRoot = join(dirname(process.execPath), '..');

function skip(why) {
  console.warn(`@splinter/seal: native AES-GCM not built (${why}); sealing falls back to node:crypto`);
  process.exit(0);
}

if (!existsSync(join(nodeRoot, 'include', 'node', 'node_api.h')))
  skip(`no node headers under ${join(nodeRoot, 'include', 'node')}`);
const nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodeRoot}`, '--loglevel=warn'], {
  cwd: packageRoot,
  stdio: 'inherit',
});
if (result.status !== 0) skip(`node-gyp exited with ${result.status ?? result.signal}`);

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshDatabase, requireTool, startRegistry } from '@splintertree/testkit';
import { CLI, generateTree, type Measured, measure, mib, table } from './support.js';

/**
 * The push and pull benchmarks: a generated tree of about 1 GiB in about 5,000 files
 * (BENCH_SIZE_MIB, BENCH_FILES), moved between a local CNCF Distribution and the client, by splinter
 * and by skopeo copying the same content between an OCI layout and the same registry.
 */
export async function runTransferBench(mode: 'push' | 'pull'): Promise<void> {
  const sizeMib = Number(process.env.BENCH_SIZE_MIB ?? 1024);
  const files = Number(process.env.BENCH_FILES ?? 5000);
  const skopeo = requireTool('skopeo');
  const work = await mkdtemp(join(tmpdir(), 'splinter-bench-'));
  const registry = await startRegistry();
  // Patch registration goes to PostgreSQL, so the RSS column measures the transfer: the embedded PGlite
  // alone costs ~800 MiB of resident WASM heap whatever the patch size (see the README).
  const database = await freshDatabase('bench_transfer', { migrate: true });
  try {
    const tree = join(work, 'tree');
    console.log(`generating ${sizeMib} MiB in ${files} files ...`);
    await generateTree(tree, sizeMib * 1024 * 1024, files, 100);
    const bytes = sizeMib * 1024 * 1024;
    const home = join(work, 'home');
    const env = { ...process.env, SPLINTER_HOME: home, DATABASE_URL: database.url };
    const splinter = (args: string[], environment = env) =>
      measure(process.execPath, [CLI, ...args], environment);

    // The embedded store is an OCI layout: it gives skopeo the very same blobs to copy.
    const packed = await splinter(['patch', 'push', tree, '--realm', 'bench', '--version', '1', '--json']);
    const layout = `oci:${join(home, 'store')}:patches/bench:1`;
    const rows: Array<Record<string, string>> = [];
    const row = (tool: string, what: string, result: Measured) =>
      rows.push({
        tool,
        what,
        seconds: result.seconds.toFixed(2),
        throughput: `${(bytes / 1024 / 1024 / result.seconds).toFixed(1)} MiB/s`,
        'peak RSS': mib(result.peakRssBytes),
      });
    row('splinter', 'pack into embedded store', packed);

    const toRegistry = ['--registry', registry.host, '--plain-http', '--json'];
    if (mode === 'push') {
      const ours = await splinter([
        'patch',
        'push',
        tree,
        '--realm',
        'bench-remote',
        '--version',
        '1',
        ...toRegistry,
      ]);
      const theirs = await measure(skopeo, [
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        layout,
        `docker://${registry.host}/bench/skopeo:1`,
      ]);
      const again = await splinter([
        'patch',
        'push',
        tree,
        '--realm',
        'bench-remote',
        '--version',
        '2',
        ...toRegistry,
      ]);
      row('splinter', 'push folder -> registry', ours);
      row('skopeo', 'copy OCI layout -> registry', theirs);
      row('splinter', 're-push unchanged folder', again);
      table(rows);
      const reupload = JSON.parse(again.stdout).blobs as { uploaded: number; skipped: number };
      console.log(`\nthroughput ratio splinter/skopeo: ${(theirs.seconds / ours.seconds).toFixed(2)}`);
      console.log(`unchanged re-push uploaded ${reupload.uploaded} blobs (skipped ${reupload.skipped})`);
    } else {
      await splinter(['patch', 'push', tree, '--realm', 'bench-remote', '--version', '1', ...toRegistry]);
      const reference = `${registry.host}/patches/bench-remote:1`;
      const clientEnv = { ...env, SPLINTER_HOME: join(work, 'client-home') };
      const ours = await splinter(
        [
          'patch',
          'pull',
          reference,
          '--output',
          join(work, 'client'),
          '--plain-http',
          '--insecure-skip-verify',
          '--json',
        ],
        clientEnv,
      );
      const theirs = await measure(skopeo, [
        'copy',
        '--quiet',
        '--src-tls-verify=false',
        `docker://${reference}`,
        `oci:${join(work, 'skopeo-layout')}:1`,
      ]);
      // Like for like with skopeo copy: the same blobs, digest-checked, into an OCI layout, no tree.
      const fetched = await splinter(
        ['patch', 'fetch', reference, '--plain-http', '--insecure-skip-verify', '--json'],
        { ...env, SPLINTER_HOME: join(work, 'fetch-home') },
      );
      // Like for like: what a user gets from skopeo plus GNU tar and install, the same two writes
      // (blobs kept in a layout, files in a folder) with the same 4 jobs at once.
      const skopeoLayout = join(work, 'skopeo-layout');
      const script = join(work, 'unpack-commands');
      await writeFile(script, await unpackCommands(skopeoLayout, join(work, 'skopeo-client')));
      const unpack = await measure('bash', ['-c', `xargs -P 4 -d '\\n' -n 1 bash -c < ${script}`]);
      const combined: Measured = {
        seconds: theirs.seconds + unpack.seconds,
        peakRssBytes: Math.max(theirs.peakRssBytes, unpack.peakRssBytes),
        stdout: '',
      };
      row('splinter', 'pull registry -> cache + unpacked folder', ours);
      row('skopeo', 'copy registry -> OCI layout', theirs);
      row('splinter', 'fetch registry -> cache (an OCI layout), no unpacking', fetched);
      row('skopeo + tar', 'copy, then unpack layers (tar -xz, install; 4 jobs)', combined);
      table(rows);
      console.log(
        `\nthroughput ratio splinter/skopeo copy: ${(theirs.seconds / ours.seconds).toFixed(2)} (skopeo stores blobs only)`,
      );
      console.log(
        `throughput ratio splinter fetch/skopeo copy: ${(theirs.seconds / fetched.seconds).toFixed(2)} (both store blobs only)`,
      );
      console.log(
        `throughput ratio splinter/(skopeo copy + tar unpack): ${(combined.seconds / ours.seconds).toFixed(2)} (both store blobs and write the tree)`,
      );
    }
  } finally {
    await registry.stop();
    await database.drop();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * One shell command per layer of the single manifest in an OCI layout: tar+gzip groups are extracted
 * (entries are `<title>/<path>`, so the title folder is stripped), raw file layers installed at their
 * title with their mode.
 */
async function unpackCommands(layout: string, output: string): Promise<string> {
  const blob = (digest: string) => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string }>;
  };
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as {
    layers: Array<{ digest: string; mediaType: string; annotations?: Record<string, string> }>;
  };
  const commands = manifest.layers.map((layer) => {
    const title = layer.annotations?.['org.opencontainers.image.title'] ?? '';
    if (layer.mediaType.endsWith('+gzip')) {
      // GNU tar instances extracting into one tree race on shared parent folders: now and then one
      // finds a folder missing that another is creating ("Cannot open: No such file or directory",
      // about 1 run in 6 here). A second pass over that group is what a user would do.
      const untar = `tar -xzf ${blob(layer.digest)} -C ${output} --strip-components=1`;
      return `mkdir -p ${output} && (${untar} 2>/dev/null || ${untar})`;
    }
    const mode = layer.annotations?.['dev.splintertree.file.mode'] ?? '0644';
    return `install -D -m ${mode} ${blob(layer.digest)} ${join(output, title)}`;
  });
  return `${commands.join('\n')}\n`;
}

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { defaultChunkThreads } from '@splintertree/pack';
import { freshDatabase, requireTool, startRegistry } from '@splintertree/testkit';
import {
  CLI,
  generateTree,
  type Measured,
  machineFacts,
  markdownTable,
  measure,
  mib,
  table,
  writeBenchSection,
} from './support.js';

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
    const splinter = (args: string[], environment: NodeJS.ProcessEnv = env) =>
      measure(process.execPath, [CLI, ...args], environment);

    // The embedded store is an OCI layout: it gives skopeo the very same blobs to copy.
    const packed = await splinter(['patch', 'push', tree, '--realm', 'bench', '--version', '1', '--json']);
    const layout = `oci:${join(home, 'store')}:patches/bench:1`;
    const rows: Array<Record<string, string>> = [];
    const ratios: string[] = [];
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
      // The same push chunking on the main thread: what the worker threads buy on this machine.
      const oneThread = await splinter(
        ['patch', 'push', tree, '--realm', 'bench-one-thread', '--version', '1', ...toRegistry],
        { ...env, SPLINTER_CHUNK_THREADS: '0' },
      );
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
      row('splinter', 'the same, chunking on the main thread', oneThread);
      row('skopeo', 'copy OCI layout -> registry', theirs);
      row('splinter', 're-push unchanged folder', again);
      table(rows);
      const reupload = JSON.parse(again.stdout).transfer as { transferred: number; reused: number };
      const ratio = `throughput ratio splinter/skopeo: ${(theirs.seconds / ours.seconds).toFixed(2)}`;
      const threads = `${defaultChunkThreads()} chunking threads: ${(oneThread.seconds / ours.seconds).toFixed(2)}x the speed of the main thread alone`;
      console.log(`\n${ratio}\n${threads}`);
      ratios.push(ratio, threads);
      const reused = `unchanged re-push uploaded ${reupload.transferred} blobs (skipped ${reupload.reused})`;
      console.log(reused);
      ratios.push(reused);
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
      // What a studio would do without splinter: the tree as one tar+gzip layer of an ordinary OCI
      // image, copied by skopeo and unpacked by GNU tar. Packing and pushing it are set-up, not timed.
      const tarball = await tarballImage(tree, join(work, 'tarball-layout'));
      await measure(skopeo, [
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        `oci:${tarball.layout}:1`,
        `docker://${registry.host}/bench/tarball:1`,
      ]);
      const tarLayout = join(work, 'tarball-client-layout');
      const copied = await measure(skopeo, [
        'copy',
        '--quiet',
        '--src-tls-verify=false',
        `docker://${registry.host}/bench/tarball:1`,
        `oci:${tarLayout}:1`,
      ]);
      const tarClient = join(work, 'tarball-client');
      await mkdir(tarClient);
      const unpacked = await measure('tar', ['-xzf', blobPath(tarLayout, tarball.layer), '-C', tarClient]);
      const combined: Measured = {
        seconds: copied.seconds + unpacked.seconds,
        peakRssBytes: Math.max(copied.peakRssBytes, unpacked.peakRssBytes),
        stdout: '',
      };
      row('splinter', 'pull registry -> cache + unpacked folder', ours);
      row('skopeo', 'copy registry -> OCI layout', theirs);
      row('splinter', 'fetch registry -> cache (an OCI layout), no unpacking', fetched);
      row('skopeo + tar', 'one tar+gzip layer: copy, then tar -xz into a folder', combined);
      table(rows);
      ratios.push(
        `throughput ratio splinter/skopeo copy: ${(theirs.seconds / ours.seconds).toFixed(2)} (skopeo stores blobs only)`,
        `throughput ratio splinter fetch/skopeo copy: ${(theirs.seconds / fetched.seconds).toFixed(2)} (both store blobs only)`,
        `throughput ratio splinter/(skopeo copy + tar unpack): ${(combined.seconds / ours.seconds).toFixed(2)} (both fetch and write the tree; theirs has no chunks, no dedup, no locale)`,
      );
      console.log(`\n${ratios.join('\n')}`);
    }
    await writeBenchSection(
      mode,
      'bench/transfer.ts',
      `${machineFacts()}; ${sizeMib} MiB in ${files} files, CNCF Distribution on loopback.\n\n${markdownTable(rows)}\n${ratios.map((line) => `- ${line}`).join('\n')}\n`,
    );
  } finally {
    await registry.stop();
    await database.drop();
    await rm(work, { recursive: true, force: true });
  }
}

function blobPath(layout: string, digest: string): string {
  return join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** An OCI layout holding one image: an empty config and the tree as a single tar+gzip layer. */
async function tarballImage(tree: string, layout: string): Promise<{ layout: string; layer: string }> {
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  const staged = join(layout, 'layer.tar.gz');
  await measure('tar', ['-czf', staged, '-C', tree, '.']);
  const hash = createHash('sha256');
  await pipeline(createReadStream(staged), hash);
  const layer = `sha256:${hash.digest('hex')}`;
  const layerSize = (await stat(staged)).size;
  await rename(staged, blobPath(layout, layer));
  const put = async (bytes: Buffer) => {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await writeFile(blobPath(layout, digest), bytes);
    return { digest, size: bytes.byteLength };
  };
  const config = await put(Buffer.from('{}'));
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', ...config },
        layers: [
          {
            mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
            digest: layer,
            size: layerSize,
          },
        ],
      }),
    ),
  );
  await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': '1' },
        },
      ],
    }),
  );
  return { layout, layer };
}

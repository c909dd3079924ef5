import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  createOpenStream,
  createSealStream,
  generatePatchKey,
  openSealedFile,
  type SealBackend,
  sealBackend,
  sealFile,
} from '@splinter/seal';
import { requireTool } from '@splinter/testkit';
import { applyDownloadV8Settings, DOWNLOAD_V8_FLAGS } from '../apps/cli/src/v8-settings.js';
import { mib, table } from './support.js';

/** Sealed blob opened from memory, over and over (GCM authenticates a whole blob, so it cannot loop). */
const BLOB_MIB = 16;
const WARM_UP_MIB = 256;

interface Timed {
  seconds: number;
  cpuSeconds: number;
}

async function timed(run: () => Promise<void>): Promise<Timed> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  await run();
  const used = process.cpuUsage(cpu);
  return { seconds: (performance.now() - started) / 1000, cpuSeconds: (used.user + used.system) / 1e6 };
}

/**
 * Seals BENCH_SIZE_MIB (default 1024) MiB and opens as much again, compared in the same run with
 * `openssl speed -evp aes-256-gcm` at 16 KiB blocks on one core. openssl speed works in memory and
 * divides by the CPU time it used, so the ratios are MiB per CPU-second of this process (user + system,
 * GC threads included) from memory to a discarding sink. Wall-clock throughput is printed beside them
 * (it suffers when the machine is shared), and so is opening a sealed file (the read adds its cost).
 * Seal and open from memory run on the native addon (when built) and again on the node:crypto fallback.
 * After an unmeasured warm-up, the native rows run with V8's defaults (the library in anyone's
 * process); the opening rows then run again with the V8 settings `splinter pull` and `launcher sync`
 * apply to their process (`apps/cli/src/v8-settings.ts`), since that is where preloads are opened.
 * Last, the whole-file passes that pull and push use for large files (`openSealedFile`, `sealFile`,
 * on a worker thread): to nothing, against openssl speed; into new files, against dd doing the same
 * I/O in the same minute.
 */
export default async function (): Promise<void> {
  const sizeMib = Number(process.env.BENCH_SIZE_MIB ?? 1024);
  const work = await mkdtemp(join(tmpdir(), 'splinter-bench-seal-'));
  const key = generatePatchKey();
  const chunk = randomBytes(1024 * 1024);
  const sealedPath = join(work, 'sealed');
  const plain = (mebibytes: number) =>
    Readable.from(
      (function* () {
        for (let i = 0; i < mebibytes; i++) yield chunk;
      })(),
    );
  const discard = () =>
    new Writable({
      write(_data, _encoding, callback) {
        callback();
      },
    });
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  try {
    const parts: Buffer[] = [];
    await pipeline(
      plain(BLOB_MIB),
      createSealStream(key),
      new Writable({
        write(data: Buffer, _encoding, callback) {
          parts.push(data);
          callback();
        },
      }),
    );
    const sealed = Buffer.concat(parts);
    parts.length = 0;
    const slices: Buffer[] = [];
    for (let offset = 0; offset < sealed.byteLength; offset += chunk.byteLength)
      slices.push(sealed.subarray(offset, offset + chunk.byteLength));
    const openFromMemory = (backend: SealBackend, mebibytes = sizeMib) =>
      timed(async () => {
        for (let done = 0; done < mebibytes; done += BLOB_MIB)
          await pipeline(Readable.from(slices), createOpenStream(key, { backend }), discard());
      });
    const measure = async (backend: SealBackend, mebibytes = sizeMib) => ({
      seal: await timed(() => pipeline(plain(mebibytes), createSealStream(key, { backend }), discard())),
      open: await openFromMemory(backend, mebibytes),
    });
    const active = sealBackend().backend;
    const openFile = () =>
      timed(() =>
        pipeline(
          createReadStream(sealedPath, { highWaterMark: 1024 * 1024 }),
          createOpenStream(key),
          discard(),
        ),
      );
    // Unmeasured: compiles the hot paths and fills the addon's block pool, so that neither set of
    // rows below pays for that and the second set is not favoured by running warm.
    await measure(active, WARM_UP_MIB);
    const inMemory = await measure(active);
    const fallback = active === 'native' ? await measure('node:crypto') : undefined;
    await pipeline(plain(sizeMib), createSealStream(key), createWriteStream(sealedPath));
    const asLibrary = { ...inMemory, file: await openFile() };
    applyDownloadV8Settings();
    const asPull = { open: await openFromMemory(active), file: await openFile() };
    const whole = await measureWholeFiles(work, key, sealedPath, sizeMib);
    clearInterval(timer);

    const opensslMibPerSecond = opensslSpeed('aes-256-gcm');
    const opensslSha256 = opensslSpeed('sha256');
    // One core hashing and deciphering each byte, as openssl speed would do the two in turn.
    const hashAndCipher = 1 / (1 / opensslMibPerSecond + 1 / opensslSha256);
    const rate = (seconds: number) => sizeMib / seconds;
    const row = (what: string, result: Timed) => ({
      what,
      'per CPU-second': `${rate(result.cpuSeconds).toFixed(0)} MiB/s`,
      'wall clock': `${rate(result.seconds).toFixed(0)} MiB/s`,
    });
    const asPullRuns = `as splinter pull runs it (${DOWNLOAD_V8_FLAGS.join(' ')})`;
    table([
      row(`splinter seal ${sizeMib} MiB (memory -> discard), ${active}`, asLibrary.seal),
      row(
        `splinter open ${sizeMib} MiB (${BLOB_MIB} MiB blobs in memory -> discard), ${active}`,
        asLibrary.open,
      ),
      row(`splinter open ${sizeMib} MiB (file -> discard), ${active}`, asLibrary.file),
      row(`splinter open from memory, ${active}, ${asPullRuns}`, asPull.open),
      row(`splinter open from a file, ${active}, ${asPullRuns}`, asPull.file),
      ...(fallback
        ? [
            row(`splinter seal ${sizeMib} MiB (memory -> discard), node:crypto`, fallback.seal),
            row(`splinter open ${sizeMib} MiB (${BLOB_MIB} MiB blobs in memory), node:crypto`, fallback.open),
          ]
        : []),
      row(`whole file: open ${sizeMib} MiB sealed file -> discard, worker thread`, whole.openOnly),
      row('whole file: the same, digest checked in the same pass', whole.openHashed),
      row('whole file: open -> new file, digest checked (the launcher at release)', whole.openInstall),
      row('  dd bs=256K copying the sealed file just before (the I/O alone)', whole.openInstallCopy),
      row(`whole file: two ${sizeMib / 2} MiB files at once -> new files, digest checked`, whole.openTwo),
      row(`whole file: seal ${sizeMib} MiB file -> new file, with its digest (push --preload)`, whole.seal),
      row('  dd bs=256K copying the plain file just before (the I/O alone)', whole.sealCopy),
      {
        what: 'openssl speed -evp aes-256-gcm, 16 KiB, 1 core',
        'per CPU-second': `${opensslMibPerSecond.toFixed(0)} MiB/s`,
        'wall clock': '',
      },
      {
        what: 'openssl speed -evp sha256, 16 KiB, 1 core (what the digest check costs)',
        'per CPU-second': `${opensslSha256.toFixed(0)} MiB/s`,
        'wall clock': '',
      },
    ]);
    const ratio = (result: Timed) =>
      `${(rate(result.cpuSeconds) / opensslMibPerSecond).toFixed(2)} per CPU-second (${(rate(result.seconds) / opensslMibPerSecond).toFixed(2)} wall clock)`;
    console.log(`\nseal/openssl ratio: ${ratio(asLibrary.seal)}`);
    console.log(`open/openssl ratio: ${ratio(asLibrary.open)} (from a file: ${ratio(asLibrary.file)})`);
    console.log(`${asPullRuns}: open ${ratio(asPull.open)} (from a file: ${ratio(asPull.file)})`);
    console.log(
      `whole files (${whole.backend}, worker thread): open -> discard ${ratio(whole.openOnly)}; ` +
        `with the digest check ${(rate(whole.openHashed.cpuSeconds) / hashAndCipher).toFixed(2)} of openssl's aes-256-gcm and sha256 together per CPU-second`,
    );
    const wall = (result: Timed) => `${rate(result.seconds).toFixed(0)} MiB/s`;
    console.log(
      `whole files into new files (wall clock): open ${wall(whole.openInstall)}, seal ${wall(whole.seal)}; ` +
        `dd writing the same bytes just before each: ${wall(whole.openInstallCopy)}, ${wall(whole.sealCopy)} (what a fresh GiB of page cache costs here varies ~10x)`,
    );
    if (fallback) {
      console.log(`node:crypto fallback: seal ${ratio(fallback.seal)}, open ${ratio(fallback.open)}`);
    }
    if (active !== 'native') console.log(`native addon not loaded: ${sealBackend().nativeUnavailable}`);
    console.log(`peak RSS growth during the run: ${mib(peak - rssBefore)}`);
  } finally {
    clearInterval(timer);
    await rm(work, { recursive: true, force: true });
  }
}

function opensslSpeed(algorithm: 'aes-256-gcm' | 'sha256'): number {
  const output = execFileSync(
    requireTool('openssl'),
    ['speed', '-evp', algorithm, '-bytes', '16384', '-seconds', '3'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const match = new RegExp(`^${algorithm}\\s+([\\d.]+)k`, 'im').exec(output);
  if (!match) throw new Error(`could not read openssl speed output:\n${output}`);
  return (Number(match[1]) * 1000) / 1024 / 1024;
}

/**
 * The whole-file passes (`sealFile`, `openSealedFile`) on `sealedPath`, a sealed file of `sizeMib`, and
 * `dd` copying the same bytes through a 256 KiB buffer as the cost of the I/O alone. Worker-thread CPU
 * is counted (process.cpuUsage covers every thread of this process).
 */
async function measureWholeFiles(work: string, key: Uint8Array, sealedPath: string, sizeMib: number) {
  let made = 0;
  const fresh = (name: string) => join(work, `${name}-${made++}`);
  const plainPath = fresh('plain');
  await openSealedFile(sealedPath, plainPath, key); // a plaintext to seal; the sealed file is now cached
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(sealedPath)) hash.update(chunk as Buffer);
  const expected = { digest: `sha256:${hash.digest('hex')}` as const, size: (await stat(sealedPath)).size };
  // Two halves, opened at once as a release opens many layers.
  const halfBytes = (sizeMib * 1024 * 1024) / 2;
  const halves: string[] = [];
  for (const start of [0, halfBytes]) {
    const part = fresh('half-plain');
    await pipeline(
      createReadStream(plainPath, { start, end: start + halfBytes - 1 }),
      createWriteStream(part),
    );
    halves.push(fresh('half-sealed'));
    await sealFile(part, halves.at(-1)!, key);
    await rm(part);
  }
  const openOnly = await timed(() => openSealedFile(sealedPath, undefined, key).then(() => undefined));
  const openHashed = await timed(() =>
    openSealedFile(sealedPath, undefined, key, { expected }).then(() => undefined),
  );
  // Writing a new file costs what the VM charges for fresh page-cache pages, which varies ~10x from
  // one minute to the next here; each writing row has a dd doing the same I/O just before it.
  const openInstallCopy = await ddCopy(sealedPath, fresh('copy'));
  const installed = fresh('installed');
  const openInstall = await timed(() =>
    openSealedFile(sealedPath, installed, key, { expected }).then(() => undefined),
  );
  await rm(installed);
  const installedHalves = halves.map(() => fresh('installed-half'));
  const openTwo = await timed(async () => {
    await Promise.all(halves.map((half, index) => openSealedFile(half, installedHalves[index]!, key)));
  });
  await Promise.all([...halves, ...installedHalves].map((path) => rm(path)));
  const sealCopy = await ddCopy(plainPath, fresh('copy'));
  const resealed = fresh('resealed');
  const seal = await timed(() => sealFile(plainPath, resealed, key).then(() => undefined));
  await Promise.all([rm(resealed), rm(plainPath)]);
  return {
    backend: sealBackend().backend,
    openOnly,
    openHashed,
    openInstall,
    openInstallCopy,
    openTwo,
    seal,
    sealCopy,
  };
}

/** dd copying `from` to `to` through a 256 KiB buffer (then removed): wall clock and CPU from bash's `time`. */
async function ddCopy(from: string, to: string): Promise<Timed> {
  const output = execFileSync(
    'bash',
    ['-c', `TIMEFORMAT='%R %U %S'; time ( dd if="$1" of="$2" bs=256K status=none ) 2>&1`, 'dd', from, to],
    { encoding: 'utf8' },
  );
  await rm(to);
  const [real, user, system] = output.trim().split(/\s+/).slice(-3).map(Number);
  return { seconds: real!, cpuSeconds: user! + system! };
}

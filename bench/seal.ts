import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  createOpenStream,
  createSealStream,
  generatePatchKey,
  type SealBackend,
  sealBackend,
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
    clearInterval(timer);

    const openssl = requireTool('openssl');
    const speed = execFileSync(
      openssl,
      ['speed', '-evp', 'aes-256-gcm', '-bytes', '16384', '-seconds', '3'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    const match = /AES-256-GCM\s+([\d.]+)k/i.exec(speed);
    if (!match) throw new Error(`could not read openssl speed output:\n${speed}`);
    const opensslMibPerSecond = (Number(match[1]) * 1000) / 1024 / 1024;
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
      {
        what: 'openssl speed -evp aes-256-gcm, 16 KiB, 1 core',
        'per CPU-second': `${opensslMibPerSecond.toFixed(0)} MiB/s`,
        'wall clock': '',
      },
    ]);
    const ratio = (result: Timed) =>
      `${(rate(result.cpuSeconds) / opensslMibPerSecond).toFixed(2)} per CPU-second (${(rate(result.seconds) / opensslMibPerSecond).toFixed(2)} wall clock)`;
    console.log(`\nseal/openssl ratio: ${ratio(asLibrary.seal)}`);
    console.log(`open/openssl ratio: ${ratio(asLibrary.open)} (from a file: ${ratio(asLibrary.file)})`);
    console.log(`${asPullRuns}: open ${ratio(asPull.open)} (from a file: ${ratio(asPull.file)})`);
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

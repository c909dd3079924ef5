import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createOpenStream, createSealStream, generatePatchKey } from '@splinter/seal';
import { requireTool } from '@splinter/testkit';
import { mib, table } from './support.js';

/**
 * Seals BENCH_SIZE_MIB (default 1024) MiB into a file and opens it again, compared in the same run
 * with `openssl speed -evp aes-256-gcm` at 16 KiB blocks on one core. openssl speed divides by the CPU
 * time it used, not wall time, so the ratios compare MiB per CPU-second of this process (user + system,
 * GC threads included); wall-clock throughput is printed beside them, and suffers when the machine is
 * shared.
 */
function cpuSecondsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

export default async function (): Promise<void> {
  const sizeMib = Number(process.env.BENCH_SIZE_MIB ?? 1024);
  const work = await mkdtemp(join(tmpdir(), 'splinter-bench-seal-'));
  const key = generatePatchKey();
  const chunk = randomBytes(1024 * 1024);
  const sealedPath = join(work, 'sealed');
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
    let started = performance.now();
    let cpu = process.cpuUsage();
    await pipeline(
      Readable.from(
        (function* () {
          for (let i = 0; i < sizeMib; i++) yield chunk;
        })(),
      ),
      createSealStream(key),
      discard(),
    );
    const sealSeconds = (performance.now() - started) / 1000;
    const sealCpuSeconds = cpuSecondsSince(cpu);
    await pipeline(
      Readable.from(
        (function* () {
          for (let i = 0; i < sizeMib; i++) yield chunk;
        })(),
      ),
      createSealStream(key),
      createWriteStream(sealedPath),
    );
    started = performance.now();
    cpu = process.cpuUsage();
    await pipeline(
      createReadStream(sealedPath, { highWaterMark: 1024 * 1024 }),
      createOpenStream(key),
      discard(),
    );
    const openSeconds = (performance.now() - started) / 1000;
    const openCpuSeconds = cpuSecondsSince(cpu);
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
    table([
      {
        what: `splinter seal ${sizeMib} MiB (memory -> discard)`,
        'per CPU-second': `${rate(sealCpuSeconds).toFixed(0)} MiB/s`,
        'wall clock': `${rate(sealSeconds).toFixed(0)} MiB/s`,
      },
      {
        what: `splinter open ${sizeMib} MiB (file -> discard)`,
        'per CPU-second': `${rate(openCpuSeconds).toFixed(0)} MiB/s`,
        'wall clock': `${rate(openSeconds).toFixed(0)} MiB/s`,
      },
      {
        what: 'openssl speed -evp aes-256-gcm, 16 KiB, 1 core',
        'per CPU-second': `${opensslMibPerSecond.toFixed(0)} MiB/s`,
        'wall clock': '',
      },
    ]);
    const ratio = (cpuSeconds: number, seconds: number) =>
      `${(rate(cpuSeconds) / opensslMibPerSecond).toFixed(2)} per CPU-second (${(rate(seconds) / opensslMibPerSecond).toFixed(2)} wall clock)`;
    console.log(`\nseal/openssl ratio: ${ratio(sealCpuSeconds, sealSeconds)}`);
    console.log(`open/openssl ratio: ${ratio(openCpuSeconds, openSeconds)}`);
    console.log(`peak RSS growth during the run: ${mib(peak - rssBefore)}`);
  } finally {
    clearInterval(timer);
    await rm(work, { recursive: true, force: true });
  }
}

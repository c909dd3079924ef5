import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const CLI = join(import.meta.dirname, '..', 'apps', 'cli', 'bin', 'splinter.js');

export interface Measured {
  seconds: number;
  peakRssBytes: number;
  stdout: string;
}

/**
 * Runs a program to completion, timing it and sampling its peak resident set (VmHWM) from /proc
 * every 20 ms, so splinter and the tool it is compared with are measured the same way.
 */
export function measure(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const sample = async () => {
      try {
        const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
        const match = /VmHWM:\s+(\d+) kB/.exec(status);
        if (match) peak = Math.max(peak, Number(match[1]) * 1024);
      } catch {
        // the process has exited
      }
    };
    const timer = setInterval(() => void sample(), 20);
    child.on('error', reject);
    child.on('close', async (code) => {
      clearInterval(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0)
        return reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
      resolve({ seconds, peakRssBytes: peak, stdout });
    });
  });
}

/**
 * A game-like tree of incompressible content: `largeFiles` big files carrying most of the bytes and
 * the rest of `files` small ones (1-40 KiB) in nested folders.
 */
export async function generateTree(
  root: string,
  totalBytes: number,
  files: number,
  largeFiles: number,
): Promise<void> {
  const smallCount = files - largeFiles;
  const smallBytes = Math.round(smallCount * 20.5 * 1024);
  const largeSize = Math.floor((totalBytes - smallBytes) / largeFiles);
  const block = randomBytes(1024 * 1024);
  for (let i = 0; i < largeFiles; i++) {
    const dir = join(root, 'paks', `set-${i % 10}`);
    await mkdir(dir, { recursive: true });
    const parts: Buffer[] = [];
    for (let written = 0; written < largeSize; written += block.byteLength) {
      const part = randomBytes(Math.min(block.byteLength, largeSize - written));
      parts.push(part);
    }
    await writeFile(join(dir, `data-${i}.pak`), Buffer.concat(parts));
  }
  for (let i = 0; i < smallCount; i++) {
    const dir = join(root, 'assets', `zone-${i % 50}`, `kind-${i % 7}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `asset-${i}.bin`), randomBytes(1024 + ((i * 7919) % (40 * 1024))));
  }
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function table(rows: Array<Record<string, string>>): void {
  const keys = Object.keys(rows[0] ?? {});
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => (r[k] ?? '').length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ');
  console.log(line(keys));
  for (const row of rows) console.log(line(keys.map((k) => row[k] ?? '')));
}

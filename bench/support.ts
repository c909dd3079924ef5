import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';

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
  // Each step starts with no dirty pages of the one before: on this VM's disk, a step's fsyncs (and
  // skopeo's) otherwise wait behind the writeback of earlier steps (a fresh pull measured 4.96 s to
  // 10.14 s in three runs of the same code).
  spawnSync('sync');
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

export interface WireCounts {
  /** Every HTTP request the proxy forwarded. */
  requests: number;
  /** Response body bytes of every request. */
  bytes: number;
  /** GET requests for `/v2/<name>/blobs/<digest>` (whole or ranged). */
  blobRequests: number;
  /** Response body bytes of those blob GETs. */
  blobBytes: number;
}

export interface CountingProxy {
  /** `127.0.0.1:PORT`, to use in references instead of the registry's host. */
  host: string;
  /** What went through since the last `reset()` (or the start). */
  counts(): WireCounts;
  reset(): void;
  stop(): Promise<void>;
}

const BLOB_GET = /^\/v2\/.+\/blobs\/[a-z0-9]+:[a-f0-9]+(\?.*)?$/;

/**
 * A plain-HTTP reverse proxy on loopback in front of a registry (`target` is `HOST:PORT`) that counts
 * requests and response body bytes as they pass, so a client's own transfer figures can be checked on
 * the wire. Bodies are streamed through, never held; the Host header is passed on unchanged, so the
 * registry's Location headers point back at the proxy.
 */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let counts: WireCounts = { requests: 0, bytes: 0, blobRequests: 0, blobBytes: 0 };
  const server = http.createServer((request, response) => {
    const isBlobGet = request.method === 'GET' && BLOB_GET.test(request.url ?? '');
    counts.requests += 1;
    if (isBlobGet) counts.blobRequests += 1;
    const upstream = http.request(
      {
        host: targetHost,
        port: Number(targetPort),
        method: request.method,
        path: request.url,
        headers: request.headers,
        agent,
      },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.statusMessage, answer.headers);
        answer.on('data', (chunk: Buffer) => {
          counts.bytes += chunk.byteLength;
          if (isBlobGet) counts.blobBytes += chunk.byteLength;
        });
        answer.pipe(response);
      },
    );
    upstream.on('error', (error) => {
      if (!response.headersSent) response.writeHead(502);
      response.end(String(error));
    });
    request.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    counts: () => ({ ...counts }),
    reset() {
      counts = { requests: 0, bytes: 0, blobRequests: 0, blobBytes: 0 };
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      agent.destroy();
    },
  };
}

/** The sum of the sizes of every regular file under `dir` (0 if it does not exist). */
export async function folderBytes(dir: string): Promise<number> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let total = 0;
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await folderBytes(path);
    else if (entry.isFile()) total += (await lstat(path)).size;
  }
  return total;
}

/** The same rows as `table`, as a GitHub-flavoured Markdown table. */
export function markdownTable(rows: Array<Record<string, string>>): string {
  const keys = Object.keys(rows[0] ?? {});
  const line = (values: string[]) => `| ${values.map((v) => v.replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(keys), line(keys.map(() => '---')), ...rows.map((r) => line(keys.map((k) => r[k] ?? '')))]
    .map((l) => `${l}\n`)
    .join('');
}

/**
 * Sends SIGTERM to every live process whose parent is this one (the benchmark's own children, found
 * by pid in /proc), so a benchmark that runs out of time ends what it started and unwinds normally.
 */
export async function stopChildProcesses(): Promise<number[]> {
  const stopped: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name (which may hold spaces and parentheses): state, ppid, ...
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== process.pid) continue;
    try {
      process.kill(Number(name), 'SIGTERM');
      stopped.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return stopped;
}

/** `text` with the section under `heading` (up to the next `## ` heading) replaced, or appended. */
function replaceSection(text: string | undefined, heading: string, sectionText: string): string {
  if (text === undefined) return `# Benchmarks\n\n${sectionText}`;
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start === -1) return `${text.trimEnd()}\n\n${sectionText}`;
  const after = lines.findIndex((l, i) => i > start && /^## /.test(l));
  const before = lines.slice(0, start).join('\n');
  const rest = after === -1 ? '' : `\n${lines.slice(after).join('\n')}`;
  return `${before}${start > 0 ? '\n' : ''}${sectionText}${rest}`;
}

/**
 * Replaces the `## name` section of docs/benchmarks.md (or creates the file) with this run's figures:
 * the benchmark writes them, never a hand. `source` names the file that produced them.
 */
export async function writeBenchSection(name: string, source: string, body: string): Promise<void> {
  const path = join(import.meta.dirname, '..', 'docs', 'benchmarks.md');
  const heading = `## ${name}`;
  const sectionText = `${heading}\n\n\`npm run bench -- ${name}\` (${source}).\n\n${body.trimEnd()}\n`;
  let existing: string | undefined;
  try {
    existing = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, replaceSection(existing, heading, sectionText));
  console.log(`\nwritten to ${relative(process.cwd(), path)} (${heading})`);
}

/** The date and machine a run's figures come from, for the line above its table. */
export function machineFacts(): string {
  return `${new Date().toISOString().slice(0, 10)}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(2)} GiB memory, Node ${process.version}, load average ${loadavg()[0]!.toFixed(2)} at the end`;
}

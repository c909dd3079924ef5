import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import {
  copyFile,
  type FileHandle,
  link,
  mkdir,
  mkdtemp,
  open,
  readdir,
  rm,
  statfs,
  writeFile,
} from 'node:fs/promises';
import { availableParallelism, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { freshDatabase, requireTool, startRegistry } from '@splintertree/testkit';
import {
  CLI,
  type CountingProxy,
  folderBytes,
  markdownTable,
  measure,
  startCountingProxy,
  stopChildProcesses,
  table,
  type WireCounts,
  writeBenchSection,
} from './support.js';

/**
 * The delta benchmark (issue 14, "How it is measured"): what a patch costs against what it changes.
 * A pak-like tree (one archive of BENCH_DELTA_MIB, default 4096, made of entries, plus a few small
 * files) gets six kinds of change and a tree of 20,000 small files gets 1% edited; each new version
 * is pushed to a CNCF Distribution and pulled by a client that installed the base and by an empty
 * one, through a counting proxy. The same files are measured against modelled whole-file dedup,
 * modelled fixed 1 MiB chunks and `zstd --patch-from` in the same run. The figures are printed and
 * written to docs/benchmarks.md under `## delta`.
 */

const KIB = 1024;
const MIB = 1024 * KIB;
const FIXED_CHUNK = MIB;
const ARCHIVE = 'Data/archive.pak';
const SMALL_TREE_FILES = 20_000;
/** An index chunk entry: 32-byte id, u32 plain length, pack, offset, stored length, u8 encoding. */
const CHUNK_ENTRY_BYTES = 32 + 4 * 4 + 1;

let timedOut = false;

function checkDeadline(): void {
  if (timedOut) throw new Error('bench delta ran out of time (BENCH_DELTA_MINUTES)');
}

// ---------------------------------------------------------------------------------------------
// Content: incompressible random bytes, and text that DEFLATE shrinks about twofold.

const WORDS = (
  'the of and to in is you that it he was for on are as with his they at be this have from or one had ' +
  'by word but not what all were we when your can said there use an each which she do how their if will ' +
  'up other about out many then them these so some her would make like him into time has look two more ' +
  'write go see number no way could people my than first water been call who oil its now find long down ' +
  'day did get come made may part quest sword realm dragon guild raid mana potion armor shield spell ' +
  'tavern forest castle knight rogue mage healer dungeon boss loot gold silver copper iron leather cloth'
)
  .split(' ')
  .map((word) => Buffer.from(word));

function fillText(buffer: Buffer): void {
  const picks = randomBytes(4096);
  let pick = 0;
  let at = 0;
  while (at < buffer.byteLength) {
    if (pick === picks.byteLength) {
      randomFillSync(picks);
      pick = 0;
    }
    const choice = picks[pick++]!;
    at += WORDS[choice % WORDS.length]!.copy(buffer, at);
    if (at < buffer.byteLength) buffer[at++] = choice < 20 ? 0x0a : 0x20;
  }
}

function fill(buffer: Buffer, text: boolean): void {
  if (text) fillText(buffer);
  else randomFillSync(buffer);
}

async function writeAll(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
  }
}

async function readFull(handle: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buffer.byteLength) {
    const { bytesRead } = await handle.read(buffer, done, buffer.byteLength - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

// ---------------------------------------------------------------------------------------------
// The pak-like archive: "SPAK" | entries (header, data) | table of contents | footer.

interface Entry {
  name: string;
  size: number;
  text: boolean;
  /** Where the entry's data already is; absent for new content, generated when written. */
  source?: { path: string; offset: number };
}

function randomEntrySize(): number {
  return 64 * KIB + Math.floor(Math.random() * (4 * MIB - 64 * KIB));
}

function baseEntries(totalBytes: number): Entry[] {
  const entries: Entry[] = [];
  for (let total = 0; total < totalBytes; ) {
    const size = Math.min(randomEntrySize(), Math.max(64 * KIB, totalBytes - total));
    entries.push({
      name: `entries/${String(entries.length).padStart(5, '0')}.dat`,
      size,
      text: Math.random() < 0.12,
    });
    total += size;
  }
  return entries;
}

/**
 * Writes an archive of `entries` (copying data that has a source, generating the rest) in pieces of
 * at most 1 MiB, and returns the entries as they now are in it. Returns also how many bytes were
 * generated (content the archive did not have before).
 */
async function writeArchive(
  path: string,
  entries: Entry[],
): Promise<{ entries: Entry[]; generated: number }> {
  await mkdir(dirname(path), { recursive: true });
  const out = await open(path, 'w');
  const sources = new Map<string, FileHandle>();
  const piece = Buffer.allocUnsafe(MIB);
  const written: Entry[] = [];
  const toc: Buffer[] = [];
  let position = 0;
  let generated = 0;
  const put = async (bytes: Buffer) => {
    await writeAll(out, bytes, position);
    position += bytes.byteLength;
  };
  try {
    await put(Buffer.from('SPAK\0\0\0\x01'));
    for (const entry of entries) {
      checkDeadline();
      const name = Buffer.from(entry.name);
      const header = Buffer.alloc(4 + 2 + name.byteLength + 8);
      header.write('PAKE', 0);
      header.writeUInt16BE(name.byteLength, 4);
      name.copy(header, 6);
      header.writeBigUInt64BE(BigInt(entry.size), 6 + name.byteLength);
      await put(header);
      const offset = position;
      let source: FileHandle | undefined;
      if (entry.source) {
        source = sources.get(entry.source.path);
        if (!source) {
          source = await open(entry.source.path, 'r');
          sources.set(entry.source.path, source);
        }
      }
      for (let done = 0; done < entry.size; ) {
        const bytes = piece.subarray(0, Math.min(MIB, entry.size - done));
        if (source && entry.source) {
          const read = await readFull(source, bytes, entry.source.offset + done);
          if (read !== bytes.byteLength) throw new Error(`${entry.source.path} ended inside ${entry.name}`);
        } else {
          fill(bytes, entry.text);
          generated += bytes.byteLength;
        }
        await put(bytes);
        done += bytes.byteLength;
      }
      const record = Buffer.alloc(2 + name.byteLength + 16);
      record.writeUInt16BE(name.byteLength, 0);
      name.copy(record, 2);
      record.writeBigUInt64BE(BigInt(offset), 2 + name.byteLength);
      record.writeBigUInt64BE(BigInt(entry.size), 10 + name.byteLength);
      toc.push(record);
      written.push({ name: entry.name, size: entry.size, text: entry.text, source: { path, offset } });
    }
    const tocOffset = position;
    await put(Buffer.concat(toc));
    const footer = Buffer.alloc(16);
    footer.write('PAKT', 0);
    footer.writeBigUInt64BE(BigInt(tocOffset), 4);
    footer.writeUInt32BE(entries.length, 12);
    await put(footer);
    await out.sync();
  } finally {
    await out.close();
    for (const handle of sources.values()) await handle.close();
  }
  return { entries: written, generated };
}

/** Overwrites `length` bytes at each position with new random bytes (in place, no size change). */
async function overwrite(path: string, positions: number[], length: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    for (const position of positions) await writeAll(handle, randomBytes(length), position);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A random position where `length` bytes fit inside the data of one entry (not a header, not the TOC). */
function positionInData(entries: Entry[], length: number): number {
  const large = entries.filter((e) => e.size >= length + 2 * KIB);
  const entry = large[Math.floor(Math.random() * large.length)]!;
  return entry.source!.offset + KIB + Math.floor(Math.random() * (entry.size - length - 2 * KIB));
}

function shuffled<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Trees and versions.

interface PakVersion {
  dir: string;
  entries: Entry[];
  /** Bytes of content the version has that its predecessor did not (edits, new entries). */
  newBytes: number;
}

const SMALL_PAK_FILES: Array<{ path: string; size: number; text: boolean }> = [
  { path: 'Game.exe', size: 2 * MIB, text: false },
  { path: 'config.ini', size: 4 * KIB, text: true },
  { path: 'readme.txt', size: 16 * KIB, text: true },
  { path: 'Data/locale/enUS/strings.txt', size: 200 * KIB, text: true },
];

async function writeGenerated(path: string, size: number, text: boolean): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const bytes = Buffer.allocUnsafe(size);
  fill(bytes, text);
  await writeFile(path, bytes);
}

async function basePak(dir: string, totalBytes: number): Promise<PakVersion> {
  for (const file of SMALL_PAK_FILES) await writeGenerated(join(dir, file.path), file.size, file.text);
  await writeFile(join(dir, 'version.txt'), 'base\n');
  const { entries, generated } = await writeArchive(join(dir, ARCHIVE), baseEntries(totalBytes));
  return { dir, entries, newBytes: generated };
}

/** A version folder beside `from`: the small files hard-linked, a new version.txt, no archive yet. */
async function versionFolder(from: PakVersion, dir: string, label: string): Promise<string> {
  for (const file of SMALL_PAK_FILES) {
    await mkdir(dirname(join(dir, file.path)), { recursive: true });
    await link(join(from.dir, file.path), join(dir, file.path));
  }
  await writeFile(join(dir, 'version.txt'), `${label}\n`);
  return join(dir, ARCHIVE);
}

function retarget(entries: Entry[], from: string, to: string): Entry[] {
  return entries.map((e) =>
    e.source?.path === from ? { ...e, source: { path: to, offset: e.source.offset } } : e,
  );
}

/** Edits `count` places of `length` bytes in place (a copy of the archive, then overwrites). */
async function editInPlace(
  from: PakVersion,
  dir: string,
  label: string,
  count: number,
  length: number,
): Promise<PakVersion> {
  const archive = await versionFolder(from, dir, label);
  await copyFile(join(from.dir, ARCHIVE), archive);
  const positions = Array.from({ length: count }, () => positionInData(from.entries, length));
  await overwrite(archive, positions, length);
  return { dir, entries: retarget(from.entries, join(from.dir, ARCHIVE), archive), newBytes: count * length };
}

async function rewritten(
  from: PakVersion,
  dir: string,
  label: string,
  entries: Entry[],
): Promise<PakVersion> {
  const archive = await versionFolder(from, dir, label);
  const { entries: written, generated } = await writeArchive(archive, entries);
  return { dir, entries: written, newBytes: generated };
}

function insertEntry(from: PakVersion): Entry[] {
  const middle = Math.floor(from.entries.length / 2);
  const inserted: Entry = {
    name: `entries/inserted-${randomBytes(4).toString('hex')}.dat`,
    size: MIB,
    text: false,
  };
  return [...from.entries.slice(0, middle), inserted, ...from.entries.slice(middle)];
}

function swapEntries(from: PakVersion, pairs: number): Entry[] {
  const entries = [...from.entries];
  const picked = shuffled(entries.map((_, i) => i)).slice(0, 2 * pairs);
  for (let p = 0; p < pairs; p++) {
    const a = picked[2 * p]!;
    const b = picked[2 * p + 1]!;
    [entries[a], entries[b]] = [entries[b]!, entries[a]!];
  }
  return entries;
}

/** Replaces the entries at `indexes` with new content of a new random size. */
function replaceEntries(from: PakVersion, indexes: number[]): Entry[] {
  const replaced = new Set(indexes);
  return from.entries.map((e, i) =>
    replaced.has(i) ? { name: e.name, size: randomEntrySize(), text: e.text } : e,
  );
}

function recompressEntries(from: PakVersion): Entry[] {
  return from.entries.map((e) => ({ name: e.name, size: e.size, text: e.text }));
}

interface SmallTree {
  dir: string;
  files: Array<{ path: string; size: number }>;
}

async function baseSmallTree(dir: string, count: number): Promise<SmallTree> {
  const files: SmallTree['files'] = [];
  for (let i = 0; i < count; i++) {
    if (i % 1000 === 0) checkDeadline();
    const path = `assets/zone-${String(i % 60).padStart(2, '0')}/kind-${i % 7}/asset-${i}.bin`;
    const size = KIB + Math.floor(Math.random() * 39 * KIB);
    await writeGenerated(join(dir, path), size, i % 4 === 0);
    files.push({ path, size });
  }
  return { dir, files };
}

/** A copy of the tree (unchanged files hard-linked) with `fraction` of its files edited in 1 KiB. */
async function editSmallTree(from: SmallTree, dir: string, fraction: number): Promise<number> {
  const edited = new Set(
    shuffled(from.files.map((_, i) => i)).slice(0, Math.round(from.files.length * fraction)),
  );
  let newBytes = 0;
  for (const [i, file] of from.files.entries()) {
    const target = join(dir, file.path);
    await mkdir(dirname(target), { recursive: true });
    if (!edited.has(i)) {
      await link(join(from.dir, file.path), target);
      continue;
    }
    await copyFile(join(from.dir, file.path), target);
    const length = Math.min(KIB, file.size);
    await overwrite(target, [Math.floor(Math.random() * (file.size - length + 1))], length);
    newBytes += length;
  }
  return newBytes;
}

// ---------------------------------------------------------------------------------------------
// Digests of a tree (whole files and fixed 1 MiB pieces) and the modelled baselines.

interface FileDigest {
  size: number;
  whole: string;
  pieces: Array<{ digest: string; size: number }>;
}

type TreeDigest = Map<string, FileDigest>;

async function listFiles(dir: string, root = dir): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await listFiles(path, root)));
    else if (entry.isFile()) found.push(relative(root, path));
  }
  return found;
}

async function digestTree(dir: string): Promise<TreeDigest> {
  const digests: TreeDigest = new Map();
  const piece = Buffer.allocUnsafe(FIXED_CHUNK);
  for (const path of (await listFiles(dir)).sort()) {
    checkDeadline();
    const handle = await open(join(dir, path), 'r');
    try {
      const whole = createHash('sha256');
      const pieces: FileDigest['pieces'] = [];
      let size = 0;
      for (;;) {
        const read = await readFull(handle, piece, size);
        if (read === 0) break;
        const bytes = piece.subarray(0, read);
        whole.update(bytes);
        pieces.push({ digest: createHash('sha256').update(bytes).digest('hex'), size: read });
        size += read;
        if (read < piece.byteLength) break;
      }
      digests.set(path, { size, whole: whole.digest('hex'), pieces });
    } finally {
      await handle.close();
    }
  }
  return digests;
}

/** Paths of `next` whose content is not the same file at the same path in `previous`. */
function changedPaths(previous: TreeDigest, next: TreeDigest): string[] {
  return [...next].filter(([path, d]) => previous.get(path)?.whole !== d.whole).map(([path]) => path);
}

/** Whole-file dedup (content-addressed files): the bytes of every file of `next` not in `previous`. */
function wholeFileModel(previous: TreeDigest, next: TreeDigest): number {
  const known = new Set([...previous.values()].map((d) => d.whole));
  let bytes = 0;
  for (const d of next.values()) {
    if (!known.has(d.whole)) bytes += d.size;
    known.add(d.whole);
  }
  return bytes;
}

/** Fixed 1 MiB chunks, content-addressed across the tree: bytes of chunks of `next` not in `previous`. */
function fixedChunkModel(previous: TreeDigest, next: TreeDigest): number {
  const known = new Set([...previous.values()].flatMap((d) => d.pieces.map((p) => p.digest)));
  let bytes = 0;
  for (const d of next.values()) {
    for (const p of d.pieces) {
      if (!known.has(p.digest)) bytes += p.size;
      known.add(p.digest);
    }
  }
  return bytes;
}

interface Counted {
  bytes: number;
  seconds: number;
}

/** Runs a program, counting (and discarding) its standard output; a failure is returned, not thrown. */
function countOutput(
  command: string,
  args: string[],
  timeoutMs: number,
): Promise<Counted | { failure: string }> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      bytes += chunk.byteLength;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk).slice(-2000);
    });
    child.on('error', (error) => resolve({ failure: error.message }));
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ bytes, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
      else resolve({ failure: (stderr.trim().split('\n').pop() ?? '') || `exited ${code ?? signal}` });
    });
  });
}

/**
 * `zstd --patch-from=OLD NEW` for every changed file (plain zstd for a file with no predecessor):
 * the pairwise lower bound. Undefined with the reason when zstd refuses a file.
 */
async function zstdModel(
  previousDir: string,
  previous: TreeDigest,
  nextDir: string,
  changed: string[],
  timeoutMs: number,
): Promise<{ bytes: number; seconds: number } | { failure: string }> {
  let bytes = 0;
  let seconds = 0;
  for (const path of changed) {
    checkDeadline();
    const reference = previous.has(path) ? [`--patch-from=${join(previousDir, path)}`] : [];
    const result = await countOutput(
      'zstd',
      [...reference, '--long=31', '-T0', '-q', '-c', join(nextDir, path)],
      timeoutMs,
    );
    if ('failure' in result) return { failure: `${path}: ${result.failure}` };
    bytes += result.bytes;
    seconds += result.seconds;
  }
  return { bytes, seconds };
}

// ---------------------------------------------------------------------------------------------
// What a version stores (read per docs/format.md, independently of the product's reader).

interface StoredVersion {
  rootBytes: number;
  /** Stored bytes of every record the version's files and index use, each record once. */
  liveRecordBytes: number;
  /** Sum of the sizes of every pack the manifest lists. */
  packBytes: number;
  chunks: number;
}

async function registryBytes(url: string, headers: Record<string, string>, limit: number): Promise<Buffer> {
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  if (bytes.byteLength > limit) throw new Error(`GET ${url}: more than ${limit} bytes`);
  return bytes;
}

async function storedVersion(registryUrl: string, repository: string, tag: string): Promise<StoredVersion> {
  const base = `${registryUrl}/v2/${repository}`;
  const manifest = JSON.parse(
    (
      await registryBytes(
        `${base}/manifests/${tag}`,
        { accept: 'application/vnd.oci.image.manifest.v1+json' },
        4 * MIB,
      )
    ).toString(),
  ) as { layers: Array<{ digest: string; size: number }> };
  const [rootLayer, ...packLayers] = manifest.layers;
  const root = JSON.parse(
    (await registryBytes(`${base}/blobs/${rootLayer!.digest}`, {}, 64 * MIB)).toString(),
  ) as {
    packs: Array<{ number: number; digest: string; size: number }>;
    index: { digest: string; size: number; chunks: Array<[string, number, number, number, number, number]> };
  };
  const packs = new Map(root.packs.map((p) => [p.number, p.digest]));
  const records = new Map<string, number>();
  const parts: Buffer[] = [];
  for (const [id, plain, pack, offset, stored, encoding] of root.index.chunks) {
    const body = await registryBytes(
      `${base}/blobs/${packs.get(pack)}`,
      { range: `bytes=${offset}-${offset + stored - 1}` },
      stored,
    );
    const chunk = encoding === 1 ? inflateRawSync(body, { maxOutputLength: plain }) : body;
    if (createHash('sha256').update(chunk).digest('hex') !== id)
      throw new Error(`index chunk ${id} mismatch`);
    parts.push(chunk);
    records.set(`${pack}:${offset}`, stored);
  }
  const index = Buffer.concat(parts);
  if (createHash('sha256').update(index).digest('hex') !== root.index.digest.replace('sha256:', ''))
    throw new Error('index digest mismatch');
  let at = 12;
  const count = index.readUInt32BE(8);
  let chunks = 0;
  for (let e = 0; e < count; e++) {
    const type = index.readUInt8(at);
    at += 3 + index.readUInt16BE(at + 1) + 1;
    const tags = index.readUInt8(at++);
    for (let t = 0; t < tags; t++) at += 1 + index.readUInt8(at);
    if (type === 1) {
      at += 8 + 32;
      const n = index.readUInt32BE(at);
      at += 4;
      for (let c = 0; c < n; c++, at += CHUNK_ENTRY_BYTES) {
        records.set(
          `${index.readUInt32BE(at + 36)}:${index.readUInt32BE(at + 40)}`,
          index.readUInt32BE(at + 44),
        );
      }
      chunks += n;
    } else if (type === 3) {
      at += 2 + index.readUInt16BE(at);
    }
  }
  return {
    rootBytes: rootLayer!.size,
    liveRecordBytes: [...records.values()].reduce((a, b) => a + b, 0),
    packBytes: packLayers.reduce((a, p) => a + p.size, 0),
    chunks,
  };
}

// ---------------------------------------------------------------------------------------------
// splinter, measured.

interface PushFigures {
  seconds: number;
  peakRssBytes: number;
  storageGrowth: number;
  blobBytes: number;
  newRecordBytes: number;
  newChunks: number;
  chunks: number;
  compactedPacks: number;
}

interface PullFigures {
  seconds: number;
  peakRssBytes: number;
  wire: WireCounts;
  reported: { requests: number; bytes: number; wholePacks: number };
  kept: number;
  correct: boolean;
}

interface Splinter {
  push(dir: string, realm: string, version: string, parent?: string): Promise<PushFigures>;
  pull(
    home: string,
    output: string,
    realm: string,
    version: string,
    expected: TreeDigest,
  ): Promise<PullFigures>;
}

function splinterOn(
  registry: { host: string; storageDir: string },
  proxy: CountingProxy,
  databaseUrl: string,
  publisherHome: string,
): Splinter {
  const run = (home: string, args: string[]) =>
    measure(process.execPath, [CLI, ...args], {
      ...process.env,
      SPLINTER_HOME: home,
      DATABASE_URL: databaseUrl,
    });
  return {
    async push(dir, realm, version, parent) {
      checkDeadline();
      const before = await folderBytes(registry.storageDir);
      const lineage = parent === undefined ? [] : ['--parent', parent];
      const result = await run(publisherHome, [
        'patch',
        'push',
        dir,
        '--realm',
        realm,
        '--version',
        version,
        ...lineage,
        '--registry',
        registry.host,
        '--plain-http',
        '--json',
      ]);
      const json = JSON.parse(result.stdout) as {
        transfer: { bytes: number };
        chunks: { chunks: number; newChunks: number; newRecordBytes: number; compactedPacks: number };
      };
      return {
        seconds: result.seconds,
        peakRssBytes: result.peakRssBytes,
        storageGrowth: (await folderBytes(registry.storageDir)) - before,
        blobBytes: json.transfer.bytes,
        newRecordBytes: json.chunks.newRecordBytes,
        newChunks: json.chunks.newChunks,
        chunks: json.chunks.chunks,
        compactedPacks: json.chunks.compactedPacks,
      };
    },
    async pull(home, output, realm, version, expected) {
      checkDeadline();
      proxy.reset();
      const result = await run(home, [
        'patch',
        'pull',
        `${proxy.host}/patches/${realm}:${version}`,
        '--output',
        output,
        '--replace',
        '--insecure-skip-verify',
        '--plain-http',
        '--json',
      ]);
      const wire = proxy.counts();
      const json = JSON.parse(result.stdout) as {
        kept: number;
        transfer: { requests: number; bytes: number; wholePacks: number };
      };
      const installed = await digestTree(output);
      const correct =
        installed.size === expected.size &&
        [...expected].every(([path, d]) => installed.get(path)?.whole === d.whole);
      return {
        seconds: result.seconds,
        peakRssBytes: result.peakRssBytes,
        wire,
        reported: json.transfer,
        kept: json.kept,
        correct,
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Formatting.

function size(bytes: number): string {
  if (bytes >= 1024 * MIB) return `${(bytes / 1024 / MIB).toFixed(2)} GiB`;
  if (bytes >= MIB) return `${(bytes / MIB).toFixed(2)} MiB`;
  return `${(bytes / KIB).toFixed(1)} KiB`;
}

function ratio(value: number, reference: number): string {
  return reference === 0 ? 'n/a' : `${(value / reference).toFixed(2)}x`;
}

function verdict(pass: boolean): string {
  return pass ? 'PASS' : 'FAIL';
}

// ---------------------------------------------------------------------------------------------
// The run.

interface CaseResult {
  name: string;
  newBytes: number;
  push: PushFigures;
  update: PullFigures;
  fresh?: PullFigures;
  stored?: StoredVersion;
  back?: PullFigures;
  models: { wholeFile: number; fixed: number; zstd: Counted | { failure: string } };
  /** For a skip: the union of the new chunks of every version skipped (sum of their newRecordBytes). */
  union?: number;
  /** For a skip: the storage growth of the five pushes together. */
  pushed?: number;
}

interface Failure {
  name: string;
  message: string;
}

export default async function delta(): Promise<void> {
  const sizeMib = Number(process.env.BENCH_DELTA_MIB ?? 4096);
  const minutes = Number(process.env.BENCH_DELTA_MINUTES ?? Math.max(20, Math.ceil((90 * sizeMib) / 4096)));
  requireTool('zstd');
  const work = await mkdtemp(join(tmpdir(), 'splinter-bench-delta-'));
  const free = await statfs(work);
  const needed = 10 * sizeMib * MIB;
  if (free.bavail * free.bsize < needed) {
    await rm(work, { recursive: true, force: true });
    throw new Error(`bench delta needs about ${size(needed)} free in ${tmpdir()}`);
  }
  const timer = setTimeout(() => {
    timedOut = true;
    console.error(`bench delta: ${minutes} minutes are up, stopping`);
    void stopChildProcesses();
  }, minutes * 60_000);
  const registry = await startRegistry();
  const proxy = await startCountingProxy(registry.host);
  const database = await freshDatabase('bench_delta', { migrate: true });
  const started = Date.now();
  const progress = (what: string) =>
    console.log(`[${((Date.now() - started) / 60_000).toFixed(1)} min] ${what} ...`);
  try {
    const splinter = splinterOn(registry, proxy, database.url, join(work, 'publisher'));
    const results: CaseResult[] = [];
    const failures: Failure[] = [];
    const remainingMs = () => Math.max(1000, started + minutes * 60_000 - Date.now());
    const models = async (previousDir: string, previous: TreeDigest, nextDir: string, next: TreeDigest) => ({
      wholeFile: wholeFileModel(previous, next),
      fixed: fixedChunkModel(previous, next),
      zstd: await zstdModel(previousDir, previous, nextDir, changedPaths(previous, next), remainingMs()),
    });

    progress(`generating a pak-like tree with a ${sizeMib} MiB archive`);
    const base = await basePak(join(work, 'pak-base'), sizeMib * MIB);
    const baseDigest = await digestTree(base.dir);
    progress(`${base.entries.length} entries; pushing the base`);
    const basePush = await splinter.push(base.dir, 'pak', 'base');
    const client = { home: join(work, 'client', 'home'), output: join(work, 'client', 'tree') };
    const baseInstall = await splinter.pull(client.home, client.output, 'pak', 'base', baseDigest);
    const baseStored = await storedVersion(registry.url, 'patches/pak', 'base');

    const copySeconds = await timeCopy(join(base.dir, ARCHIVE), join(work, 'copy.pak'));

    /** Pushes a version built from the base, pulls it on the base client and on an empty one, reverts. */
    const oneVersion = async (name: string, version: string, build: (dir: string) => Promise<PakVersion>) => {
      const dir = join(work, version);
      try {
        progress(`case ${name}`);
        const next = await build(dir);
        const digest = await digestTree(dir);
        const push = await splinter.push(dir, 'pak', version, 'base');
        const update = await splinter.pull(client.home, client.output, 'pak', version, digest);
        const freshHome = join(work, 'fresh');
        const fresh = await splinter.pull(
          join(freshHome, 'home'),
          join(freshHome, 'tree'),
          'pak',
          version,
          digest,
        );
        await rm(freshHome, { recursive: true, force: true });
        const stored = await storedVersion(registry.url, 'patches/pak', version);
        const back = await splinter.pull(client.home, client.output, 'pak', 'base', baseDigest);
        const compared = await models(base.dir, baseDigest, dir, digest);
        results.push({ name, newBytes: next.newBytes, push, update, fresh, stored, back, models: compared });
      } catch (error) {
        if (timedOut) throw error;
        failures.push({ name, message: (error as Error).message });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    };

    /** Five successive versions (each edit at a new place), pulled by the base client straight to the fifth. */
    const fiveVersions = async (
      name: string,
      series: string,
      step: (from: PakVersion, dir: string, k: number) => Promise<PakVersion>,
    ) => {
      let previous = base;
      let union = 0;
      let pushed = 0;
      let newBytes = 0;
      let lastPush: PushFigures | undefined;
      const made: string[] = [];
      try {
        progress(`case ${name}`);
        for (let k = 1; k <= 5; k++) {
          const version = `${series}-${k}`;
          const dir = join(work, version);
          made.push(dir);
          const next = await step(previous, dir, k);
          lastPush = await splinter.push(dir, 'pak', version, k === 1 ? 'base' : `${series}-${k - 1}`);
          union += lastPush.newRecordBytes;
          pushed += lastPush.storageGrowth;
          newBytes += next.newBytes;
          // Only the version before is read again: older folders go as soon as they are no source.
          if (previous !== base) await rm(previous.dir, { recursive: true, force: true });
          previous = next;
        }
        const digest = await digestTree(previous.dir);
        const update = await splinter.pull(client.home, client.output, 'pak', `${series}-5`, digest);
        const back = await splinter.pull(client.home, client.output, 'pak', 'base', baseDigest);
        const compared = await models(base.dir, baseDigest, previous.dir, digest);
        results.push({ name, newBytes, push: lastPush!, update, back, models: compared, union, pushed });
      } catch (error) {
        if (timedOut) throw error;
        failures.push({ name, message: (error as Error).message });
      } finally {
        for (const dir of made) await rm(dir, { recursive: true, force: true });
      }
    };

    await oneVersion('1 MiB overwritten in place', 'overwrite', (dir) =>
      editInPlace(base, dir, 'overwrite', 1, MIB),
    );
    await oneVersion('1 MiB inserted in the middle', 'insert', (dir) =>
      rewritten(base, dir, 'insert', insertEntry(base)),
    );
    await oneVersion('5 pairs of entries swapped', 'reorder', (dir) =>
      rewritten(base, dir, 'reorder', swapEntries(base, 5)),
    );
    const order = shuffled(base.entries.map((_, i) => i));
    const share = Math.max(1, Math.round(base.entries.length * 0.05));
    await oneVersion('5% of entries changed', 'entries', (dir) =>
      rewritten(base, dir, 'entries', replaceEntries(base, order.slice(0, share))),
    );
    await oneVersion('100 x 4 KiB scattered edits', 'scattered', (dir) =>
      editInPlace(base, dir, 'scattered', 100, 4 * KIB),
    );
    await fiveVersions('skip: 5 x 1 MiB overwritten', 'overwrite-skip', (from, dir, k) =>
      editInPlace(from, dir, `overwrite-skip-${k}`, 1, MIB),
    );
    await fiveVersions('skip: 5 x 5% of entries', 'entries-skip', (from, dir, k) =>
      rewritten(
        from,
        dir,
        `entries-skip-${k}`,
        replaceEntries(from, order.slice(k * share, (k + 1) * share)),
      ),
    );
    await oneVersion('archive recompressed (control)', 'recompressed', (dir) =>
      rewritten(base, dir, 'recompressed', recompressEntries(base)),
    );
    await rm(client.output, { recursive: true, force: true });
    await rm(client.home, { recursive: true, force: true });
    await rm(base.dir, { recursive: true, force: true });

    progress(`case ${SMALL_TREE_FILES} small files, 1% edited`);
    const smallName = `${SMALL_TREE_FILES.toLocaleString('en')} small files, 1% edited`;
    const small = await baseSmallTree(join(work, 'files-base'), SMALL_TREE_FILES);
    const smallDigest = await digestTree(small.dir);
    const smallBasePush = await splinter.push(small.dir, 'files', 'base');
    const smallClient = {
      home: join(work, 'files-client', 'home'),
      output: join(work, 'files-client', 'tree'),
    };
    const smallInstall = await splinter.pull(
      smallClient.home,
      smallClient.output,
      'files',
      'base',
      smallDigest,
    );
    const smallBaseStored = await storedVersion(registry.url, 'patches/files', 'base');
    try {
      const dir = join(work, 'files-edited');
      const newBytes = await editSmallTree(small, dir, 0.01);
      const digest = await digestTree(dir);
      const push = await splinter.push(dir, 'files', 'edited', 'base');
      const update = await splinter.pull(smallClient.home, smallClient.output, 'files', 'edited', digest);
      const fresh = await splinter.pull(
        join(work, 'files-fresh', 'home'),
        join(work, 'files-fresh', 'tree'),
        'files',
        'edited',
        digest,
      );
      const stored = await storedVersion(registry.url, 'patches/files', 'edited');
      const compared = await models(small.dir, smallDigest, dir, digest);
      results.push({ name: smallName, newBytes, push, update, fresh, stored, models: compared });
    } catch (error) {
      if (timedOut) throw error;
      failures.push({ name: smallName, message: (error as Error).message });
    }

    report({
      sizeMib,
      entries: base.entries.length,
      bases: [
        {
          name: `pak tree (${sizeMib} MiB archive)`,
          push: basePush,
          install: baseInstall,
          stored: baseStored,
        },
        {
          name: smallName.replace(', 1% edited', ''),
          push: smallBasePush,
          install: smallInstall,
          stored: smallBaseStored,
        },
      ],
      results,
      failures,
      copySeconds,
      minutes: (Date.now() - started) / 60_000,
    });
    await writeBenchSection('delta', 'bench/delta.ts', markdownReport.join(''));
  } finally {
    clearTimeout(timer);
    await proxy.stop();
    await registry.stop();
    await database.drop();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Seconds `cp --reflink=never` takes to copy the archive on the same disk, and the same followed by
 * an fsync of the copy: the median of three runs of each, alternated.
 */
async function timeCopy(from: string, to: string): Promise<{ cp: number; cpSync: number }> {
  const cp: number[] = [];
  const cpSync: number[] = [];
  for (let run = 0; run < 3; run++) {
    checkDeadline();
    cp.push((await measure('cp', ['--reflink=never', from, to])).seconds);
    await rm(to);
    cpSync.push(
      (await measure('sh', ['-c', 'cp --reflink=never "$1" "$2" && sync "$2"', 'sh', from, to])).seconds,
    );
    await rm(to);
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[1]!;
  return { cp: median(cp), cpSync: median(cpSync) };
}

// ---------------------------------------------------------------------------------------------
// The report: printed, and kept as Markdown for docs/benchmarks.md.

const markdownReport: string[] = [];

function section(title: string, rows: Array<Record<string, string>>, note?: string): void {
  console.log(`\n${title}`);
  if (rows.length > 0) table(rows);
  if (note) console.log(note);
  markdownReport.push(
    `### ${title}\n\n`,
    rows.length > 0 ? markdownTable(rows) : '',
    note ? `\n${note}\n` : '',
    '\n',
  );
}

interface Report {
  sizeMib: number;
  entries: number;
  bases: Array<{ name: string; push: PushFigures; install: PullFigures; stored: StoredVersion }>;
  results: CaseResult[];
  failures: Failure[];
  copySeconds: { cp: number; cpSync: number };
  minutes: number;
}

function report(r: Report): void {
  markdownReport.length = 0;
  const intro =
    `${new Date().toISOString().slice(0, 10)}, ${availableParallelism()} cores, ${size(totalmem())} memory, ` +
    `Node ${process.version}; archive ${r.sizeMib} MiB in ${r.entries} entries (12% text, the rest random), ` +
    `CNCF Distribution on loopback, ${r.minutes.toFixed(1)} minutes.`;
  console.log(`\n${intro}`);
  markdownReport.push(`${intro}\n\n`);

  section(
    'Base versions (first push, fresh install)',
    r.bases.map((b) => ({
      tree: b.name,
      'pushed (storage growth)': size(b.push.storageGrowth),
      'compressed tree (live records + root)': size(b.stored.liveRecordBytes + b.stored.rootBytes),
      'install on the wire': size(b.install.wire.bytes),
      requests: String(b.install.wire.requests),
      'install s': b.install.seconds.toFixed(1),
      'install / compressed': ratio(b.install.wire.bytes, b.stored.liveRecordBytes + b.stored.rootBytes),
      'push s': b.push.seconds.toFixed(1),
      'push RSS': size(b.push.peakRssBytes),
      'install RSS': size(b.install.peakRssBytes),
      correct: b.install.correct ? 'yes' : 'WRONG',
    })),
  );

  section(
    'Push: what each new version costs the registry',
    r.results.map((c) => ({
      case: c.name,
      'new content': size(c.newBytes),
      'storage growth': size(c.push.storageGrowth),
      'blobs uploaded': size(c.push.blobBytes),
      'new records': size(c.push.newRecordBytes),
      'new chunks': `${c.push.newChunks}/${c.push.chunks}`,
      compacted: String(c.push.compactedPacks),
      's (last push)': c.push.seconds.toFixed(1),
      RSS: size(c.push.peakRssBytes),
    })),
    'Skip rows show the fifth push; "new content" is the bytes the generator wrote that the predecessor lacked.',
  );

  section(
    'Update: a client that installed the base pulls the new version',
    r.results.map((c) => {
      return {
        case: c.name,
        'wire bytes': size(c.update.wire.bytes),
        'wire requests (blob GETs)': `${c.update.wire.requests} (${c.update.wire.blobRequests})`,
        'reported bytes': size(c.update.reported.bytes),
        'reported requests': String(c.update.reported.requests),
        'whole packs': String(c.update.reported.wholePacks),
        kept: String(c.update.kept),
        'vs new records': ratio(c.update.wire.blobBytes, c.union ?? c.push.newRecordBytes),
        s: c.update.seconds.toFixed(1),
        RSS: size(c.update.peakRssBytes),
        'back to base (reported)': c.back ? size(c.back.reported.bytes) : '',
        correct: c.update.correct && (c.back?.correct ?? true) ? 'yes' : 'WRONG',
      };
    }),
    'For a skip, "vs new records" is against the union of the five versions\' new records.',
  );

  section(
    'Fresh install of the new version (an empty client)',
    r.results
      .filter((c) => c.fresh && c.stored)
      .map((c) => {
        const compressed = c.stored!.liveRecordBytes + c.stored!.rootBytes;
        return {
          case: c.name,
          'compressed tree': size(compressed),
          'packs listed': size(c.stored!.packBytes),
          'wire bytes': size(c.fresh!.wire.bytes),
          requests: String(c.fresh!.wire.requests),
          'vs compressed': ratio(c.fresh!.wire.blobBytes, compressed),
          s: c.fresh!.seconds.toFixed(1),
          RSS: size(c.fresh!.peakRssBytes),
          correct: c.fresh!.correct ? 'yes' : 'WRONG',
        };
      }),
    "Compressed tree: the stored bytes of every record the version's index uses, once each, plus its root.",
  );

  section(
    'Against other ways of shipping the same change (bytes to upload = bytes to download)',
    r.results.map((c) => {
      const zstd = 'failure' in c.models.zstd ? undefined : c.models.zstd.bytes;
      return {
        case: c.name,
        'new content': size(c.newBytes),
        'whole files (modelled)': size(c.models.wholeFile),
        'fixed 1 MiB (modelled)': size(c.models.fixed),
        'zstd --patch-from': zstd === undefined ? 'n/a' : size(zstd),
        'splinter up': size(c.pushed ?? c.push.storageGrowth),
        'splinter down': size(c.update.wire.bytes),
        'down / whole': ratio(c.update.wire.bytes, c.models.wholeFile),
        'down / fixed': ratio(c.update.wire.bytes, c.models.fixed),
        'down / zstd': zstd === undefined ? 'n/a' : ratio(c.update.wire.bytes, zstd),
      };
    }),
    [
      "Whole files: the bytes of every file whose content is new (what whole-file dedup, today's earlier format, moves), modelled.",
      'Fixed 1 MiB: both trees cut into 1 MiB pieces, SHA-256 each; the bytes of pieces of the new tree not in the old, modelled.',
      'zstd: Debian zstd, `zstd --patch-from=OLD NEW --long=31 -T0` per changed file (the pairwise lower bound), its output size.',
      'For skips every figure is from the base straight to the fifth version; "splinter up" is the five pushes together.',
      ...r.results
        .filter((c) => 'failure' in c.models.zstd)
        .map((c) => `zstd n/a for ${c.name}: ${(c.models.zstd as { failure: string }).failure}`),
    ].join('\n'),
  );

  const targets: Array<Record<string, string>> = [];
  const target = (what: string, measured: string, limit: string, pass: boolean) =>
    targets.push({ target: what, measured, limit, result: verdict(pass) });
  const edit = r.results.find((c) => c.name === '1 MiB overwritten in place');
  if (edit) {
    target(
      `1 MiB edit in a ${r.sizeMib} MiB file: uploaded`,
      size(edit.push.storageGrowth),
      '2 MiB',
      edit.push.storageGrowth <= 2 * MIB,
    );
    target(
      `1 MiB edit in a ${r.sizeMib} MiB file: downloaded`,
      size(edit.update.wire.bytes),
      '2 MiB',
      edit.update.wire.bytes <= 2 * MIB,
    );
    target(
      `1 MiB edit in a ${r.sizeMib} MiB file: requests`,
      String(edit.update.wire.requests),
      '30',
      edit.update.wire.requests <= 30,
    );
    const limit = Math.min(r.copySeconds.cp, r.copySeconds.cpSync);
    target(
      'apply the 1 MiB edit (update pull s) vs cp of the archive',
      `${edit.update.seconds.toFixed(2)} s (cp ${r.copySeconds.cp.toFixed(2)} s, cp+sync ${r.copySeconds.cpSync.toFixed(2)} s; ${ratio(edit.update.seconds, r.copySeconds.cp)} of cp)`,
      `<= cp (${limit.toFixed(2)} s)`,
      edit.update.seconds <= r.copySeconds.cp,
    );
  }
  for (const c of r.results) {
    if (c.union !== undefined) {
      target(
        `five-version skip, ${c.name.replace('skip: ', '')}`,
        ratio(c.update.wire.blobBytes, c.union),
        '1.2x union of new records',
        c.update.wire.blobBytes <= 1.2 * c.union,
      );
      continue;
    }
    const expected = c.push.newRecordBytes + (c.stored?.rootBytes ?? 0);
    target(
      `one-version update, ${c.name}`,
      ratio(c.update.wire.blobBytes, expected),
      '1.1x new records + root',
      c.update.wire.blobBytes <= 1.1 * expected,
    );
  }
  for (const c of r.results.filter((c) => c.fresh && c.stored)) {
    const compressed = c.stored!.liveRecordBytes + c.stored!.rootBytes;
    target(
      `fresh install, ${c.name}`,
      ratio(c.fresh!.wire.blobBytes, compressed),
      '1.1x compressed tree',
      c.fresh!.wire.blobBytes <= 1.1 * compressed,
    );
  }
  for (const b of r.bases) {
    const compressed = b.stored.liveRecordBytes + b.stored.rootBytes;
    target(
      `fresh install, base ${b.name}`,
      ratio(b.install.wire.blobBytes, compressed),
      '1.1x compressed tree',
      b.install.wire.blobBytes <= 1.1 * compressed,
    );
  }
  section(
    'Targets (issue 14)',
    targets,
    'Update and install ratios count the bytes of blob GETs on the wire (records, index, root); "new records" is the push\'s chunks.newRecordBytes (index records included).',
  );
  if (r.failures.length > 0)
    section(
      'Failures',
      r.failures.map((f) => ({ case: f.name, error: f.message.slice(0, 400) })),
    );
}

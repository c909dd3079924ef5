import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The worker threads exist only as compiled JavaScript: this file reads the build (checked fresh).
import { type ChunkedFile, ChunkPool } from '../packages/pack/dist/chunk-pool.js';
import { publishTree } from '../packages/pack/dist/publish.js';

const OPTIONS = { minSize: 2048, avgSize: 8192, maxSize: 32768 };

let dir: string;
let files: ChunkedFile[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'splinter-chunk-threads-'));
  const contents: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['tiny', Buffer.from('hello')],
    ['small', randomBytes(20_000)],
    // Several 1 MiB batches, with cuts across every batch boundary.
    ['large', randomBytes(5 * 1024 * 1024 + 12345)],
    // Runs of one byte: cuts, if any, fall where the gear hash settles.
    ['zeros', Buffer.alloc(3 * 1024 * 1024 + 7)],
    ['text', Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(60_000))],
  ];
  files = [];
  for (const [name, bytes] of contents) {
    const path = join(dir, name);
    await writeFile(path, bytes);
    files.push({ absolutePath: path, size: bytes.byteLength });
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function chunksOf(threads: number, list = files) {
  const pool = ChunkPool.open(list, OPTIONS, threads);
  expect(pool.threads).toBe(threads);
  try {
    const out: Array<Array<{ offset: number; length: number; id: string; deflate: boolean; sha: string }>> =
      [];
    for (let i = 0; i < list.length; i++) {
      const chunks = [];
      for await (const chunk of pool.chunks(i)) {
        chunks.push({
          offset: chunk.offset,
          length: chunk.bytes.byteLength,
          id: chunk.id.toString('hex'),
          deflate: chunk.deflate,
          // What the bytes handed over hash to: they must be the chunk the id names.
          sha: createHash('sha256').update(chunk.bytes).digest('hex'),
        });
      }
      out.push(chunks);
    }
    return out;
  } finally {
    await pool.close();
  }
}

describe('chunking on worker threads', () => {
  it('gives the chunks, ids and compression samples the calling thread gives', async () => {
    const inline = await chunksOf(0);
    const threaded = await chunksOf(2);
    expect(threaded).toEqual(inline);
    for (const [i, chunks] of threaded.entries()) {
      expect(chunks.reduce((sum, c) => sum + c.length, 0)).toBe(files[i]!.size);
      for (const chunk of chunks) expect(chunk.sha).toBe(chunk.id);
    }
    expect(threaded[5]!.some((c) => c.deflate)).toBe(true);
    expect(threaded[3]!.some((c) => c.deflate)).toBe(false);
  });

  it('hashes a whole file off the calling thread', async () => {
    const pool = ChunkPool.open(files, OPTIONS, 2);
    try {
      const large = files[3]!;
      const expected = createHash('sha256');
      for await (const chunk of ChunkPool.open([large], OPTIONS, 0).chunks(0)) expected.update(chunk.bytes);
      expect(await pool.digestOf(large.absolutePath)).toBe(`sha256:${expected.digest('hex')}`);
    } finally {
      await pool.close();
    }
  });

  it('fails a missing file with the calling thread’s error, and goes on with the next', async () => {
    const missing = { absolutePath: join(dir, 'gone'), size: 10 };
    const list = [missing, files[2]!];
    for (const threads of [0, 2]) {
      const pool = ChunkPool.open(list, OPTIONS, threads);
      try {
        await expect(
          (async () => {
            for await (const _ of pool.chunks(0));
          })(),
        ).rejects.toMatchObject({ code: 'NOT_FOUND', message: `no file at ${missing.absolutePath}` });
        let bytes = 0;
        for await (const chunk of pool.chunks(1)) bytes += chunk.bytes.byteLength;
        expect(bytes).toBe(files[2]!.size);
      } finally {
        await pool.close();
      }
    }
  });

  it('publishes the same packs and index with and without threads', async () => {
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'data'), { recursive: true });
    for (const [i, file] of files.entries()) {
      await writeFile(join(tree, 'data', `f${i}`), await readFile(file.absolutePath));
    }
    const roots = [];
    for (const threads of [0, 2]) {
      const workDir = await mkdtemp(join(dir, `work-${threads}-`));
      const packs: string[] = [];
      const published = await publishTree({
        dir: tree,
        workDir,
        chunker: OPTIONS,
        threads,
        onPack: (pack) => packs.push(pack.entry.digest),
      });
      roots.push({ root: published.root, packs });
    }
    expect(roots[1]).toEqual(roots[0]);
    expect(roots[0]!.packs.length).toBeGreaterThan(0);
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isSplinterError } from '@splinter/errors';
import { type Descriptor, MediaType } from '@splinter/oci';
import { PackAnnotation, unpackLayer } from '@splinter/pack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { file, groupLayer, snapshot, streamOf, tarOf, tempDir } from './helpers.js';

interface HostileCase {
  name: string;
  code: string;
  layer: () => Promise<{ descriptor: Descriptor; bytes: Buffer }>;
}

const CASES: HostileCase[] = [
  {
    name: "a '..' path",
    code: 'UNSAFE_PATH',
    layer: async () => groupLayer(await tarOf([file('g/../evil')])),
  },
  {
    name: "a nested '..' path",
    code: 'UNSAFE_PATH',
    layer: async () => groupLayer(await tarOf([file('g/a/../../evil')])),
  },
  {
    name: 'an absolute path',
    code: 'UNSAFE_PATH',
    layer: async () => groupLayer(await tarOf([file('/tmp/evil')])),
  },
  {
    name: 'a path outside the layer folder',
    code: 'UNSAFE_PATH',
    layer: async () => groupLayer(await tarOf([file('other/evil')])),
  },
  {
    name: 'a symlink escaping the tree',
    code: 'UNSAFE_LINK',
    layer: async () =>
      groupLayer(await tarOf([{ name: 'g/link', type: 'symlink', linkname: '../../outside' }])),
  },
  {
    name: 'an absolute symlink',
    code: 'UNSAFE_LINK',
    layer: async () =>
      groupLayer(await tarOf([{ name: 'g/link', type: 'symlink', linkname: '/etc/passwd' }])),
  },
  {
    name: 'a write through an earlier symlink',
    code: 'UNSAFE_LINK',
    layer: async () =>
      groupLayer(
        await tarOf([
          { name: 'g/sub', type: 'directory', mode: 0o755 },
          { name: 'g/link', type: 'symlink', linkname: 'sub' },
          file('g/link/x'),
        ]),
      ),
  },
  {
    name: 'a hard link to a file outside',
    code: 'UNSAFE_PATH',
    layer: async () => groupLayer(await tarOf([{ name: 'g/hard', type: 'link', linkname: '/etc/passwd' }])),
  },
  {
    name: 'a character device',
    code: 'UNSUPPORTED_ENTRY',
    layer: async () =>
      groupLayer(await tarOf([{ name: 'g/null', type: 'character-device', devmajor: 1, devminor: 3 }])),
  },
  {
    name: 'a block device',
    code: 'UNSUPPORTED_ENTRY',
    layer: async () =>
      groupLayer(await tarOf([{ name: 'g/sda', type: 'block-device', devmajor: 8, devminor: 0 }])),
  },
  {
    name: 'a fifo',
    code: 'UNSUPPORTED_ENTRY',
    layer: async () => groupLayer(await tarOf([{ name: 'g/pipe', type: 'fifo' }])),
  },
  {
    name: 'a group expanding past its declared size',
    code: 'LAYER_TOO_LARGE',
    layer: async () =>
      groupLayer(await tarOf([file('g/bomb', 'z'.repeat(1_000_000))]), {
        [PackAnnotation.ContentSize]: '4096',
      }),
  },
  {
    name: 'a group whose tar does not match its annotation',
    code: 'DIGEST_MISMATCH',
    layer: async () =>
      groupLayer(await tarOf([file('g/a')]), { 'io.deis.oras.content.digest': `sha256:${'1'.repeat(64)}` }),
  },
  {
    name: 'corrupt gzip',
    code: 'ARCHIVE_INVALID',
    layer: async () => {
      const good = groupLayer(await tarOf([file('g/a', 'y'.repeat(10_000))]));
      const bytes = Buffer.from(good.bytes);
      bytes.fill(0x41, 20, 60);
      return { bytes, descriptor: { ...good.descriptor, size: bytes.byteLength } };
    },
  },
  {
    name: "a file layer titled with '..'",
    code: 'UNSAFE_PATH',
    layer: async () => {
      const bytes = randomBytes(10);
      return {
        bytes,
        descriptor: {
          mediaType: MediaType.LayerTar,
          digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
          size: 10,
          annotations: { 'org.opencontainers.image.title': '../escape.bin' },
        },
      };
    },
  },
  {
    name: 'a file layer longer than its descriptor',
    code: 'LAYER_TOO_LARGE',
    layer: async () => {
      const bytes = randomBytes(100);
      return {
        bytes,
        descriptor: {
          mediaType: MediaType.LayerTar,
          digest: `sha256:${'2'.repeat(64)}`,
          size: 50,
          annotations: { 'org.opencontainers.image.title': 'file.bin' },
        },
      };
    },
  },
];

describe('hostile layers are refused and nothing lands outside staging', () => {
  let work: string;
  beforeAll(async () => {
    work = await tempDir('hostile');
    await mkdir(join(work, 'sentinel'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  for (const hostile of CASES) {
    it(`refuses ${hostile.name} with ${hostile.code}`, async () => {
      const staging = join(work, 'case', 'staging');
      await mkdir(staging, { recursive: true });
      const { descriptor, bytes } = await hostile.layer();
      const before = await snapshot(work);
      const error = await unpackLayer(descriptor, streamOf(bytes), staging).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isSplinterError(error), String(error)).toBe(true);
      expect((error as { code: string }).code).toBe(hostile.code);
      expect((error as Error).message).not.toContain('\n');
      const after = await snapshot(work);
      // Only the staging folder may have changed.
      const outside = (s: Record<string, string>) =>
        Object.keys(s).filter((k) => !k.startsWith('case/staging/'));
      expect(outside(after)).toEqual(outside(before));
      expect(await readdir(join(work, 'sentinel'))).toEqual([]);
      await rm(join(work, 'case'), { recursive: true, force: true });
    });
  }
});

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface MountedFileSystem {
  /** Where it is mounted. */
  dir: string;
  unmount(): Promise<void>;
}

/**
 * Mounts a file system made for one test (root is needed). Where mounting is impossible the test is
 * skipped, except under CI=true, where that is a failure: a CI run must not pass by skipping.
 */
async function mountFor(
  what: string,
  mount: (dir: string) => void,
  unmount: (dir: string) => void,
): Promise<MountedFileSystem | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'splinter-mount-'));
  try {
    mount(dir);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    const why = `cannot mount ${what}: ${(error as Error).message.split('\n')[0]}`;
    if (process.env.CI === 'true') throw new Error(`${why} (CI=true: this test may not skip)`);
    return undefined;
  }
  return {
    dir,
    async unmount() {
      unmount(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A tmpfs of `size` (e.g. `2m`): a disk that fills up for real (ENOSPC). */
export function mountTmpfs(size: string): Promise<MountedFileSystem | undefined> {
  return mountFor(
    `a ${size} tmpfs`,
    (dir) =>
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0777`, 'tmpfs', dir], { stdio: 'pipe' }),
    (dir) => execFileSync('umount', ['-l', dir], { stdio: 'pipe' }),
  );
}

/**
 * A case-insensitive, case-preserving file system, as Windows and macOS players have by default: exFAT
 * on a loop device, mounted with exfat-fuse (Debian's exfatprogs and exfat-fuse; this machine's kernel
 * has neither casefold nor vfat). It holds no symlinks, no hard links and no modes.
 */
export async function mountCaseInsensitive(size = '64M'): Promise<MountedFileSystem | undefined> {
  const image = join(await mkdtemp(join(tmpdir(), 'splinter-exfat-')), 'disk.img');
  let device = '';
  const mounted = await mountFor(
    'an exFAT image (needs root, losetup, mkfs.exfat from exfatprogs, mount.exfat-fuse from exfat-fuse)',
    (dir) => {
      execFileSync('truncate', ['-s', size, image], { stdio: 'pipe' });
      execFileSync('mkfs.exfat', [image], { stdio: 'pipe' });
      device = execFileSync('losetup', ['-f', '--show', image], { stdio: 'pipe' }).toString().trim();
      try {
        execFileSync('mount.exfat-fuse', [device, dir], { stdio: 'pipe' });
      } catch (error) {
        execFileSync('losetup', ['-d', device], { stdio: 'pipe' });
        throw error;
      }
    },
    (dir) => {
      execFileSync('umount', [dir], { stdio: 'pipe' });
      execFileSync('losetup', ['-d', device], { stdio: 'pipe' });
    },
  );
  if (!mounted) {
    await rm(join(image, '..'), { recursive: true, force: true });
    return undefined;
  }
  return {
    dir: mounted.dir,
    async unmount() {
      await mounted.unmount();
      await rm(join(image, '..'), { recursive: true, force: true });
    },
  };
}

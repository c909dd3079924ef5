import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** True while a process of this id exists (ours, or one we may not signal). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes what killed runs left in `dir`: entries whose name `owner` matches with the owning process id
 * as its first group, when that process is gone. Returns the names removed.
 */
export async function sweepOrphans(dir: string, owner: RegExp): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(owner.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid > 0 && !processAlive(pid)) {
      await rm(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    }
  }
  return removed;
}

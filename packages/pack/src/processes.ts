import { readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** True while a process of this id exists (ours, or one we may not signal). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Says whether the owner of a leftover is gone: normally "not running"; on Ctrl-C this process too. */
export type OwnerGone = (pid: number) => boolean;

export const deadOwner: OwnerGone = (pid) => !processAlive(pid);

/**
 * Removes what killed runs left in `dir`: entries whose name `owner` matches with the owning process id
 * as its first group, when that owner is gone. Each is first renamed to a name no run uses, so a rename
 * of it under way elsewhere (a staging folder being published) either wins whole or fails; it is never
 * published half-deleted. Synchronous on purpose: an interrupted run cleans up before anything else of
 * it runs again. Returns the names removed.
 */
export function sweepOrphans(dir: string, owner: RegExp, gone: OwnerGone = deadOwner): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = Number(owner.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || !gone(pid)) continue;
    const trash = join(dir, `.splinter-trash-${process.pid}-${Math.random().toString(36).slice(2)}`);
    try {
      renameSync(join(dir, name), trash);
    } catch {
      continue; // moved or removed meanwhile
    }
    rmSync(trash, { recursive: true, force: true });
    removed.push(name);
  }
  // Trash of a sweep that was itself killed.
  for (const name of names) {
    const pid = Number(/^\.splinter-trash-(\d+)-/.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid > 0 && gone(pid))
      rmSync(join(dir, name), { recursive: true, force: true });
  }
  return removed;
}

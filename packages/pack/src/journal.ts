import { readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import { deadOwner, type OwnerGone } from './processes.js';

/** A piece of work a kill would leave half done outside the run's own temporary folders. */
export type JournalEntry =
  /** A registry upload session: cancelled (DELETE) if its run never closed it. */
  | { kind: 'upload'; origin: string; repository: string; url: string; since: number }
  /** An install into `output`: its staging folder and any old tree set aside are beside it. */
  | { kind: 'install'; output: string; since: number };

export interface JournalHandle {
  /** The work moved on (an upload session's next location). */
  update(entry: JournalEntry): Promise<void>;
  /** The work ended, either way: nothing to clean. */
  done(): Promise<void>;
}

/** How long an entry that cannot be cleaned is kept: Distribution purges upload sessions after 7 days. */
const GIVE_UP_MS = 7 * 24 * 3600 * 1000;

/**
 * The journal of work under way, in the client's state folder: one small file per entry, named
 * `<pid>-<n>.json`, written when the work starts and removed when it ends. A run killed (kill -9, a
 * power cut) leaves its files; the next run of any command finds them by their dead owner, claims each
 * by renaming it to its own pid (so two sweepers never clean the same entry) and cleans it. On Ctrl-C a
 * run cleans its own entries before it exits, and `interrupt` refuses new work meanwhile.
 */
export class WorkJournal {
  private next = 0;
  private interrupted = false;
  private readonly open = new Map<string, JournalEntry>();

  constructor(readonly dir: string) {}

  /** Records work that is starting; refused with INTERRUPTED once the run is being stopped. */
  async note(entry: JournalEntry): Promise<JournalHandle> {
    this.throwIfInterrupted();
    await mkdir(this.dir, { recursive: true });
    const name = `${process.pid}-${++this.next}-${Math.random().toString(36).slice(2, 8)}.json`;
    const path = join(this.dir, name);
    await writeAtomically(path, entry);
    this.open.set(name, entry);
    // Recorded even when stopping meanwhile: the interrupt handler then cleans it.
    this.throwIfInterrupted();
    return {
      update: async (moved) => {
        if (!this.open.has(name)) return;
        this.open.set(name, moved);
        await writeAtomically(path, moved);
      },
      done: async () => {
        if (!this.open.delete(name)) return;
        await rm(path, { force: true });
      },
    };
  }

  /** From now on `note` refuses: the run is stopping. */
  interrupt(): void {
    this.interrupted = true;
  }

  throwIfInterrupted(): void {
    if (this.interrupted) throw new SplinterError('INTERRUPTED', 'interrupted');
  }

  /** Entries this run has open now. */
  openEntries(): JournalEntry[] {
    return [...this.open.values()];
  }

  /**
   * Cleans the entries of runs that are `gone`: `clean` returns true once an entry needs nothing more
   * (an entry it cannot clean now stays, under this run's pid, for a later run, at most 7 days).
   * Returns the entries cleaned.
   */
  async sweep(
    clean: (entry: JournalEntry) => Promise<boolean>,
    gone: OwnerGone = deadOwner,
  ): Promise<JournalEntry[]> {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const cleaned: JournalEntry[] = [];
    for (const name of names) {
      const pid = Number(/^(\d+)-/.exec(name)?.[1]);
      if (!Number.isInteger(pid) || pid <= 0) continue;
      if (!gone(pid)) continue;
      // Another run's entry is claimed first: only one sweeper wins the rename.
      let path = join(this.dir, name);
      if (pid !== process.pid) {
        const claimed = join(this.dir, `${process.pid}-${++this.next}-claim.json`);
        try {
          renameSync(path, claimed);
        } catch {
          continue;
        }
        path = claimed;
      }
      let entry: JournalEntry | undefined;
      try {
        entry = JSON.parse(readFileSync(path, 'utf8')) as JournalEntry;
      } catch {
        entry = undefined; // torn by a power cut: nothing to act on
      }
      const finished =
        entry === undefined ||
        (await clean(entry).catch(() => false)) ||
        Date.now() - (entry.since ?? 0) > GIVE_UP_MS;
      if (finished) {
        rmSync(path, { force: true });
        this.open.delete(name);
        if (entry) cleaned.push(entry);
      }
    }
    return cleaned;
  }
}

async function writeAtomically(path: string, entry: JournalEntry): Promise<void> {
  const temporary = `${path}.tmp`;
  await writeFile(temporary, JSON.stringify(entry));
  await rename(temporary, path);
}

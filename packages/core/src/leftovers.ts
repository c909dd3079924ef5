import { join } from 'node:path';
import type { RegistryTarget, UploadSessions } from '@splintertree/oci';
import {
  deadOwner,
  type JournalEntry,
  type OwnerGone,
  recoverOutput,
  sweepOrphans,
  type WorkJournal,
} from '@splintertree/pack';

/** Where under SPLINTER_HOME a run keeps temporary files, each named with its pid. */
const OWNED_FILES: Array<[folder: string, owner: RegExp]> = [
  ['tmp', /^push-(\d+)-/],
  ['packs', /\.tmp-(\d+)-/],
  ['indexes', /\.tmp-(\d+)-/],
  ['installs', /\.(\d+)\.tmp$/],
  ['.', /^retained\.json\.(\d+)\.tmp$/],
  [join('store', 'ingest'), /^[0-9a-f]{64}-(\d+)-/],
];

/** Upload sessions are noted in the journal while open. */
export function journalSessions(journal: WorkJournal): UploadSessions {
  return {
    async opened(session) {
      const since = Date.now();
      const handle = await journal.note({ kind: 'upload', ...session, since });
      return {
        moved: (moved) => handle.update({ kind: 'upload', ...moved, since }),
        closed: () => handle.done(),
      };
    },
  };
}

/**
 * What runs that are gone left under SPLINTER_HOME and beside their outputs: push work folders, pack
 * cache and index temporaries, half-written records and store blobs (by the pid in their names), and,
 * from the journal, install staging folders and old trees set aside (an output missing between the two
 * renames of --replace is renamed back) and registry upload sessions (cancelled with DELETE).
 */
export class Leftovers {
  constructor(
    private readonly home: string,
    private readonly journal: WorkJournal,
    /** A client with the process's registry access (Stores.registryTarget): a session is cancelled as it was opened. */
    private readonly openTarget: (
      registry: string,
      repository: string,
      options: {
        plainHttp: boolean;
        retry: { maxAttempts: number; maxElapsedMs: number };
        timeoutMs: number;
      },
    ) => RegistryTarget,
  ) {}

  /** Cleans after runs that are `gone`; returns how many leftovers it removed or cancelled. */
  async clean(gone: OwnerGone = deadOwner): Promise<number> {
    let count = this.sweepFiles(gone);
    count += (await this.journal.sweep((entry) => this.cleanEntry(entry, gone), gone)).length;
    return count;
  }

  /**
   * Ctrl-C: new work is refused, this run's own leftovers are removed and its upload sessions cancelled
   * (for at most `budgetMs`), then the files once more, as the last thing before the process exits.
   */
  async interrupt(budgetMs = 5000): Promise<void> {
    this.journal.interrupt();
    const self: OwnerGone = (pid) => pid === process.pid || deadOwner(pid);
    this.sweepFiles(self);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.journal.sweep((entry) => this.cleanEntry(entry, self), self),
      new Promise((resolve) => {
        timer = setTimeout(resolve, budgetMs);
      }),
    ]);
    clearTimeout(timer);
    this.sweepFiles(self);
    for (const entry of this.journal.openEntries())
      if (entry.kind === 'install') recoverOutput(entry.output, self);
  }

  private sweepFiles(gone: OwnerGone): number {
    let count = 0;
    for (const [folder, owner] of OWNED_FILES)
      count += sweepOrphans(join(this.home, folder), owner, gone).length;
    return count;
  }

  private async cleanEntry(entry: JournalEntry, gone: OwnerGone): Promise<boolean> {
    if (entry.kind === 'install') {
      recoverOutput(entry.output, gone);
      return true;
    }
    const origin = new URL(entry.origin);
    const target = this.openTarget(origin.host, entry.repository, {
      plainHttp: origin.protocol === 'http:',
      retry: { maxAttempts: 2, maxElapsedMs: 5000 },
      // A registry that does not answer costs a command at most a few seconds; the entry stays.
      timeoutMs: 3000,
    });
    try {
      return await target.cancelUpload(entry.url);
    } finally {
      await target.close();
    }
  }
}

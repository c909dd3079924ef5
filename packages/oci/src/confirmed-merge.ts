import { SplinterError } from '@splintertree/errors';
import { sleep } from './registry/retry.js';

export interface ConfirmedMerge {
  /** Reads the shared document, adds our entry if it is missing, writes it back. */
  merge(): Promise<void>;
  /** Reads the shared document again: is our entry still there? */
  present(): Promise<boolean>;
  /** What is being merged, for the error when rivals never let our entry stay. */
  what: string;
}

const CONFIRM_ROUNDS = 2;
const MAX_MERGE_ATTEMPTS = 8;

/**
 * Read-modify-write of a document that registries let anyone overwrite (no conditional PUT): a
 * signature image, a referrers fallback index. A rival that read before our write lands its own within
 * about one read-merge-write window of ours, so we re-read twice, a few of our windows apart, and merge
 * again whenever our entry has been overwritten. Bounded: REGISTRY_ERROR after MAX_MERGE_ATTEMPTS.
 */
export async function confirmedMerge(operation: ConfirmedMerge): Promise<void> {
  for (let attempt = 0; attempt < MAX_MERGE_ATTEMPTS; attempt++) {
    const startedAt = Date.now();
    await operation.merge();
    const window = Date.now() - startedAt;
    let confirmed = 0;
    while (confirmed < CONFIRM_ROUNDS) {
      await sleep(Math.max(20, 2 * window) + Math.floor(Math.random() * Math.max(80, window)));
      if (!(await operation.present())) break;
      confirmed++;
    }
    if (confirmed === CONFIRM_ROUNDS) return;
  }
  throw new SplinterError(
    'REGISTRY_ERROR',
    `could not keep our entry in ${operation.what}: concurrent writers kept overwriting it`,
  );
}

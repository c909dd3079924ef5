import type { GroupSpec, UnpackResult } from './group-unpack.js';

/** Messages from the main thread to a group worker; `id` names a group (a job) within the worker. */
export type ToGroupWorker =
  /** `ring` is shared: the main thread writes compressed bytes into it, the worker reads them. */
  | { type: 'start'; id: number; spec: GroupSpec; ring: SharedArrayBuffer }
  /** Compressed bytes at `offset` in the ring, which the worker may read until it acknowledges them. */
  | { type: 'bytes'; id: number; offset: number; length: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };

/** Messages from a group worker. Each job ends with exactly one of done, failed or aborted. */
export type FromGroupWorker =
  /** zlib has taken in this many of the job's bytes, in ring order: their room may be reused. */
  | { type: 'ack'; id: number; bytes: number }
  | { type: 'done'; id: number; result: UnpackResult }
  | { type: 'failed'; id: number; error: WireError }
  | { type: 'aborted'; id: number };

/** An error as it crosses threads: structured clone keeps an Error's message but not its code. */
export interface WireError {
  /** A SplinterError (its code is an ErrorCode), else a system error such as ENOSPC. */
  splinter: boolean;
  message: string;
  code?: string | undefined;
  syscall?: string | undefined;
  path?: string | undefined;
  errno?: number | undefined;
}

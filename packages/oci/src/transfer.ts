import { isSplinterError, SplinterError } from '@splintertree/errors';

/**
 * What one transfer did, in the words every command uses, whichever way the bytes go: a push counts
 * the blobs it uploads to a store, a pull the pack records it downloads into its cache.
 */
export interface TransferStats {
  /** Blobs (push) or records (pull) sent across. */
  transferred: number;
  /** Blobs or records the destination already held (a registry's blob, a cached record): not sent. */
  reused: number;
  /** Blobs mounted from another repository of the same registry (a push only). */
  mounted: number;
  /** Bytes sent across: blobs and manifests for a push; pack bytes downloaded (index included) for a pull. */
  bytes: number;
  /** Bytes of the blobs or records reused or mounted: what the transfer did not have to send. */
  reusedBytes: number;
  /** Content requests: blob uploads and mount attempts, ranged or whole pack reads. */
  requests: number;
  /** Packs read whole because the store would not serve a range (a pull only). */
  wholePacks: number;
}

export function emptyTransferStats(): TransferStats {
  return { transferred: 0, reused: 0, mounted: 0, bytes: 0, reusedBytes: 0, requests: 0, wholePacks: 0 };
}

/** Adds `more` into `into`, figure by figure. */
export function addTransferStats(into: TransferStats, more: TransferStats): void {
  for (const key of Object.keys(into) as Array<keyof TransferStats>) into[key] += more[key];
}

/** What a transfer reports while it runs, push and pull alike. */
export type ProgressEvent =
  /** Work joined the transfer: the bytes it adds (done once sent or found already there). */
  | { type: 'planned'; bytes: number }
  /** Bytes of planned work done. */
  | { type: 'bytes'; bytes: number }
  /** One blob or record settled: how, and its size. */
  | { type: 'item'; outcome: 'transferred' | 'reused' | 'mounted'; bytes: number; digest?: string };

export type ProgressListener = (event: ProgressEvent) => void;

/** Where long transfers report their progress (the CLI draws a bar; libraries pass nothing). */
export interface ProgressSink {
  begin(label: string, totalBytes: number): void;
  /** More work joined the transfer (a push learns its blobs as it packs them). */
  expect(bytes: number): void;
  advance(bytes: number): void;
  end(): void;
}

/** The listener that draws a transfer's events on `sink`. */
export function progressTo(sink: ProgressSink | undefined): ProgressListener | undefined {
  if (!sink) return undefined;
  return (event) => {
    if (event.type === 'planned') sink.expect(event.bytes);
    else if (event.type === 'bytes') sink.advance(event.bytes);
  };
}

/** The error a transfer stopped by its AbortSignal rejects with: INTERRUPTED, whatever was cut short. */
export function interruptedError(signal: AbortSignal | undefined): SplinterError {
  const reason: unknown = signal?.reason;
  if (isSplinterError(reason, 'INTERRUPTED')) return reason;
  return new SplinterError('INTERRUPTED', 'interrupted', reason === undefined ? {} : { cause: reason });
}

/** Throws INTERRUPTED once `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw interruptedError(signal);
}

/**
 * Runs `work` under `signal`: refused with INTERRUPTED if it has aborted already; an abort meanwhile
 * calls `onAbort` (which destroys the stream in flight, so `work` fails and cleans up as any failure
 * does), and whatever `work` then rejects with becomes INTERRUPTED: an undici AbortError or a stream
 * destroyed mid-read says nothing the caller can act on. It settles when `work` does, never before, so
 * nothing of it is still writing once it has rejected.
 */
export async function abortable<T>(
  signal: AbortSignal | undefined,
  work: () => Promise<T>,
  onAbort?: (error: SplinterError) => void,
): Promise<T> {
  if (!signal) return work();
  throwIfAborted(signal);
  const listener = () => onAbort?.(interruptedError(signal));
  signal.addEventListener('abort', listener, { once: true });
  try {
    return await work();
  } catch (error) {
    if (signal.aborted) throw interruptedError(signal);
    throw error;
  } finally {
    signal.removeEventListener('abort', listener);
  }
}

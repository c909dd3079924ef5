import { parentPort } from 'node:worker_threads';
import { isSplinterError } from '@splinter/errors';
import type { FromGroupWorker, ToGroupWorker, WireError } from './group-protocol.js';
import { GroupUnpack } from './group-unpack.js';

// The group worker's entry point (see group-pool.ts): it runs GroupUnpack jobs for the main thread.

const port = parentPort;
if (!port) throw new Error('group-worker.js runs as a worker thread');
const jobs = new Map<number, { unpack: GroupUnpack; ring: SharedArrayBuffer }>();
const send = (message: FromGroupWorker) => port.postMessage(message);

port.on('message', (message: ToGroupWorker) => {
  const { id } = message;
  switch (message.type) {
    case 'start': {
      const unpack = new GroupUnpack(message.spec);
      jobs.set(id, { unpack, ring: message.ring });
      unpack.result.then(
        (result) => {
          if (jobs.delete(id)) send({ type: 'done', id, result });
        },
        (error: unknown) => {
          if (jobs.delete(id)) send({ type: 'failed', id, error: toWire(error) });
        },
      );
      return;
    }
    case 'bytes': {
      const job = jobs.get(id);
      const { offset, length } = message;
      job?.unpack.write(new Uint8Array(job.ring, offset, length), () =>
        send({ type: 'ack', id, bytes: length }),
      );
      return;
    }
    case 'end':
      jobs.get(id)?.unpack.end();
      return;
    case 'abort':
      jobs.get(id)?.unpack.abort();
      jobs.delete(id);
      send({ type: 'aborted', id });
      return;
  }
});

function toWire(error: unknown): WireError {
  if (isSplinterError(error)) return { splinter: true, code: error.code, message: error.message };
  const system = error as NodeJS.ErrnoException;
  return {
    splinter: false,
    message: system?.message ?? String(error),
    code: system?.code,
    syscall: system?.syscall,
    path: system?.path,
    errno: system?.errno,
  };
}

import { type ChildProcess, spawn } from 'node:child_process';
import { CLI, scrubbedEnv } from './support.js';

export interface ServedApi {
  url: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

const READY_WITHIN_MS = 20_000;

/**
 * Runs `splinter serve` on a port the server picks, reads its URL from the `launcher API listening`
 * log line, and checks that /readyz answers 200.
 */
export async function serveApi(env: Record<string, string>, args: string[] = []): Promise<ServedApi> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], {
    env: scrubbedEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let settled = false;
    const settle = (error: Error | undefined, listening?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        child.kill('SIGKILL');
        reject(error);
      } else resolve(listening!);
    };
    const timer = setTimeout(
      () => settle(new Error(`splinter serve did not start listening: ${output}`)),
      READY_WITHIN_MS,
    );
    const read = (chunk: Buffer) => {
      output += chunk;
      const listening = listeningUrl(output);
      if (listening !== undefined) settle(undefined, listening);
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.once('exit', (code) => settle(new Error(`splinter serve exited ${code}: ${output}`)));
  });
  const ready = await fetch(`${url}/readyz`);
  if (ready.status !== 200) {
    child.kill('SIGKILL');
    throw new Error(`splinter serve is listening but /readyz answered ${ready.status}: ${output}`);
  }
  return {
    url,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** The URL in the server's `launcher API listening` log line (pino JSON), once it has been written. */
function listeningUrl(output: string): string | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('launcher API listening')) continue;
    try {
      const url = (JSON.parse(line) as { url?: unknown }).url;
      if (typeof url === 'string') return url;
    } catch {
      // a line still being written
    }
  }
  return undefined;
}

/** `POST /launcher/patches/:id/unlock` as a launcher sends it. */
export async function unlock(url: string, id: string, token?: string) {
  const response = await fetch(`${url}/launcher/patches/${id}/unlock`, {
    method: 'POST',
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

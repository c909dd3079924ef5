import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Small JSON records the apps keep under SPLINTER_HOME (what a launcher or activator installed where).
 * A missing or unreadable record reads as undefined: the caller then installs afresh.
 */
export async function readRecord<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Replaces a record atomically (write beside it, then rename), so a crash leaves the old one whole. */
export async function writeRecord(file: string, value: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`, { flush: true });
  await rename(temporary, file);
}

export async function isFolder(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}

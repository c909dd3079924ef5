import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  acceptReleaseStatement,
  isFolder,
  type PullTrust,
  parseLocation,
  type ReleaseTrust,
  readRecord,
  type Splinter,
  writeRecord,
} from '@splintertree/core';
import { SplinterError } from '@splintertree/errors';

export interface ModSyncOptions {
  realm: string;
  /** Each active mod goes to `<output>/<mod name>`. */
  output: string;
  trust: PullTrust;
  /** Where the activator remembers which mods it installed (one JSON file per realm). */
  stateDir: string;
  concurrency?: number | undefined;
  /**
   * Install the mods of a head only with a release statement signed by these keys (read from the
   * release database, trusted only once it verifies): the mods are the ones the statement pins.
   */
  release?: ReleaseTrust | undefined;
}

interface ActivatorRecord {
  output: string;
  /** Mod name -> manifest digest, as installed. */
  mods: Record<string, string>;
}

export interface ModSyncResult {
  realm: string;
  /** The realm's head whose mods are now installed (null: no active patch, so no mods). */
  head: { id: string; version: string } | null;
  installed: Array<{ name: string; digest: string; downloaded: number }>;
  kept: Array<{ name: string; digest: string }>;
  removed: string[];
  /** The signed release statement the mods were taken from (with release keys only). */
  release?: { sequence: string; expiresAt: string };
}

/**
 * Makes `<output>/<name>` hold exactly the mods pinned by the realm's active patch: new or changed mods
 * are pulled (verified, staged, swapped in), unchanged ones kept, and mods this activator installed
 * that the head no longer pins are removed. A rollback of the patch therefore rolls its mods back.
 */
export async function syncMods(splinter: Splinter, options: ModSyncOptions): Promise<ModSyncResult> {
  const realm = await splinter.showRealm(options.realm);
  let pins = realm.mods;
  let release: ModSyncResult['release'];
  if (options.release) {
    const stored = await splinter.releaseStatement(options.realm);
    const statement = await acceptReleaseStatement({
      envelope: stored.envelope,
      realm: options.realm,
      trust: options.release,
      stateFile: join(options.stateDir, `${options.realm}.release.json`),
    });
    if (realm.head?.id !== statement.head.id) {
      throw new SplinterError(
        'RELEASE_HEAD_MISMATCH',
        `the release database names head ${realm.head?.id ?? '(none)'}, but release statement #${statement.sequence} names ${statement.head.id}`,
      );
    }
    pins = statement.mods;
    release = { sequence: statement.sequence, expiresAt: statement.expiresAt };
  }
  const output = resolve(options.output);
  const recordFile = join(options.stateDir, `${options.realm}.json`);
  const previous = await readRecord<ActivatorRecord>(recordFile);
  const before = previous?.output === output ? previous.mods : {};
  const wanted = new Map<string, { reference: string; digest: string }>();
  for (const pin of pins) {
    const name = parseLocation(pin.reference).repository.split('/').at(-1)!;
    if (wanted.has(name)) {
      throw new SplinterError(
        'INVALID_ARGUMENT',
        `the head of ${options.realm} pins two mods named ${name}: ${wanted.get(name)!.reference} and ${pin.reference}`,
      );
    }
    wanted.set(name, pin);
  }

  const result: ModSyncResult = {
    realm: options.realm,
    head: realm.head ? { id: realm.head.id, version: realm.head.version } : null,
    installed: [],
    kept: [],
    removed: [],
    ...(release ? { release } : {}),
  };
  const now: Record<string, string> = {};
  for (const [name, pin] of wanted) {
    const folder = join(output, name);
    if (before[name] === pin.digest && (await isFolder(folder))) {
      result.kept.push({ name, digest: pin.digest });
    } else {
      const pulled = await splinter.pull({
        kind: 'mod',
        reference: pin.reference,
        output: folder,
        replace: true,
        trust: options.trust,
        concurrency: options.concurrency,
        expect: { digest: pin.digest, source: release ? `release statement #${release.sequence}` : 'patch' },
      });
      result.installed.push({ name, digest: pulled.digest, downloaded: pulled.transfer.bytes });
    }
    now[name] = pin.digest;
    // Recorded as each mod lands, so an interrupted round never forgets a folder it created.
    await writeRecord(recordFile, { output, mods: { ...before, ...now } } satisfies ActivatorRecord);
  }
  for (const name of Object.keys(before)) {
    if (wanted.has(name)) continue;
    await rm(join(output, name), { recursive: true, force: true });
    result.removed.push(name);
  }
  await writeRecord(recordFile, { output, mods: now } satisfies ActivatorRecord);
  return result;
}

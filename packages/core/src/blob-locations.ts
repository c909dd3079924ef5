import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Descriptor } from '@splintertree/oci';

type Locations = Record<string, Record<string, string[]>>;

const REPOSITORIES_PER_BLOB = 4;

/**
 * Which repositories of a registry were seen holding a blob (from this machine's pushes and pulls), so a
 * push to another repository of the same registry can mount the blob instead of uploading it again.
 */
export class BlobLocations {
  private loaded: Promise<Locations> | undefined;

  constructor(private readonly file: string) {}

  private load(): Promise<Locations> {
    this.loaded ??= readFile(this.file, 'utf8')
      .then((text) => JSON.parse(text) as Locations)
      .catch(() => ({}));
    return this.loaded;
  }

  async candidates(registry: string): Promise<(desc: Descriptor) => string[]> {
    const byDigest = (await this.load())[registry] ?? {};
    return (desc) => byDigest[desc.digest] ?? [];
  }

  async record(registry: string, repository: string, blobs: Descriptor[]): Promise<void> {
    const locations = await this.load();
    const byDigest = locations[registry] ?? {};
    locations[registry] = byDigest;
    for (const blob of blobs) {
      const repositories = (byDigest[blob.digest] ?? []).filter((r) => r !== repository);
      byDigest[blob.digest] = [repository, ...repositories].slice(0, REPOSITORIES_PER_BLOB);
    }
    await mkdir(dirname(this.file), { recursive: true });
    const temporary = `${this.file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(temporary, JSON.stringify(locations));
    await rename(temporary, this.file);
  }
}

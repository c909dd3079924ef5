import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSplinter, settingsFromEnvironment } from '@splintertree/core';
import { type RunningRegistry, startRegistry, startStallingProxy } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('an abandoned upload session whose registry does not answer', () => {
  let registry: RunningRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('costs a command a few seconds, not minutes, and stays journaled for a later run', async () => {
    const home = await mkdtemp(join(tmpdir(), 'splinter-unreachable-'));
    const proxy = await startStallingProxy(registry.host);
    proxy.stall();
    // The pid of a process that has exited: the owner of the entry is gone.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const entry = {
      kind: 'upload',
      origin: `http://${proxy.host}`,
      repository: 'mods/gone',
      url: `http://${proxy.host}/v2/mods/gone/blobs/uploads/0b7a0e6c-0000-4000-8000-000000000000?_state=x`,
      since: Date.now(),
    };
    await mkdir(join(home, 'journal'), { recursive: true });
    await writeFile(join(home, 'journal', `${dead}-1-test.json`), JSON.stringify(entry));
    const settings = settingsFromEnvironment({ SPLINTER_HOME: home });
    const started = Date.now();
    const splinter = await openSplinter({ settings });
    await splinter.close();
    const took = Date.now() - started;
    expect(took).toBeLessThan(15_000);
    // Still journaled (now under this process, gone once the test's worker exits) for a later run.
    const kept = await readdir(join(home, 'journal'));
    expect(kept).toHaveLength(1);
    expect(JSON.parse(await readFile(join(home, 'journal', kept[0]!), 'utf8'))).toEqual(entry);
    await proxy.stop();
  });
});

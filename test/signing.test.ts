import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, writeKeyPair } from '@splintertree/sign';
import { type RunningRegistry, requireTool, startFaultProxy, startRegistry } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, tempDir } from '../packages/pack/test/helpers.js';
import { run, SAMPLE, SAMPLE_MOD, splinterCli } from './support.js';

interface PushJson {
  digest: string;
  reference: string;
  signatures: Array<{ format: string; location: string }>;
}

describe('signing on push, verification before download (CLI, real registry)', () => {
  let work: string;
  let registry: RunningRegistry;
  let env: Record<string, string>;
  const key = (name: string) => join(work, `${name}.key`);
  const pub = (name: string) => join(work, `${name}.pub`);

  beforeAll(async () => {
    work = await tempDir('signing');
    registry = await startRegistry({ auth: 'none' });
    env = { SPLINTER_HOME: join(work, 'home'), COSIGN_PASSWORD: 'release' };
    for (const name of ['release', 'rotated', 'stranger']) {
      await writeKeyPair(join(work, name), await generateKeyPair('release'));
    }
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const pushTo = (args: string[], environment = env) =>
    splinterCli([...args, '--registry', registry.host, '--plain-http', '--json'], environment);
  const push = async (realm: string, extra: string[], version = '1') => {
    const pushed = await pushTo(['patch', 'push', SAMPLE, '--realm', realm, '--version', version, ...extra]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const result = JSON.parse(pushed.stdout) as PushJson;
    return { ...result, pinned: `${registry.host}/patches/${realm}@${result.digest}` };
  };
  const pull = (reference: string, output: string, extra: string[], home = 'client') =>
    splinterCli(['patch', 'pull', reference, '--output', join(work, output), '--plain-http', ...extra], {
      ...env,
      SPLINTER_HOME: join(work, home),
    });
  const nothingWritten = async (output: string, home: string) => {
    const left = (await readdir(work)).filter((n) => n === output || n.startsWith('.splinter-staging'));
    expect(left).toEqual([]);
    const cached = await readdir(join(work, home, 'store', 'blobs', 'sha256')).catch(() => [] as string[]);
    return cached;
  };

  it('signs in both cosign formats on push; verify reports each by key; pull verifies then installs', async () => {
    const pushed = await push('both', ['--key', key('release')]);
    expect(pushed.signatures.map((s) => s.format)).toEqual(['legacy', 'bundle']);
    expect(pushed.signatures[0]!.location).toBe(
      `${registry.host}/patches/both:sha256-${pushed.digest.slice(7)}.sig`,
    );

    const verified = await splinterCli(
      ['verify', pushed.pinned, '--key', pub('release'), '--plain-http', '--json'],
      env,
    );
    expect(verified.code, verified.stderr).toBe(0);
    const report = JSON.parse(verified.stdout) as {
      digest: string;
      verified: Array<{ format: string; key: string }>;
      rejected: unknown[];
    };
    expect(report.digest).toBe(pushed.digest);
    expect(report.verified.map((v) => [v.format, v.key]).sort()).toEqual([
      ['bundle', pub('release')],
      ['legacy', pub('release')],
    ]);
    expect(report.rejected).toEqual([]);

    const pulled = await pull(pushed.pinned, 'both-out', ['--key', pub('release'), '--json']);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect((JSON.parse(pulled.stdout) as { verifiedBy: unknown[] }).verifiedBy).toHaveLength(2);
    expect(await snapshot(join(work, 'both-out'))).toEqual(await snapshot(SAMPLE));
  });

  it('refuses a wrong key before downloading any content blob, and writes nothing', async () => {
    const pushed = await push('wrong-key', ['--key', key('release')]);
    const proxy = await startFaultProxy(registry.host);
    try {
      const reference = pushed.pinned.replace(registry.host, proxy.host);
      const refused = await pull(reference, 'wrong-out', ['--key', pub('stranger')], 'wrong-home');
      expect(refused.code).toBe(5);
      expect(refused.stderr).toMatch(/^splinter: SIGNATURE_UNTRUSTED: /);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      const manifest = JSON.parse(
        (await splinterCli(['inspect', pushed.pinned, '--plain-http', '--json'], env)).stdout,
      ) as { layers: Array<{ digest: string }> };
      const contentRequests = proxy.log.filter((entry) =>
        manifest.layers.some((layer) => entry.path.includes(layer.digest)),
      );
      expect(contentRequests).toEqual([]);
      expect(await nothingWritten('wrong-out', 'wrong-home')).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it('patch fetch verifies, fills the cache without unpacking, and the pull after it downloads nothing', async () => {
    const pushed = await push('fetched', ['--key', key('release')]);
    const fetch = (keyName: string, home: string) =>
      splinterCli(['patch', 'fetch', pushed.pinned, '--key', pub(keyName), '--plain-http', '--json'], {
        ...env,
        SPLINTER_HOME: join(work, home),
      });
    const refused = await fetch('stranger', 'fetch-refused-home');
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/^splinter: SIGNATURE_UNTRUSTED: /);
    expect(await nothingWritten('fetch-refused-out', 'fetch-refused-home')).toEqual([]);

    const fetched = await fetch('release', 'fetch-home');
    expect(fetched.code, fetched.stderr).toBe(0);
    const result = JSON.parse(fetched.stdout) as {
      kind: string;
      digest: string;
      transfer: { requests: number; bytes: number; wholePacks: number };
      verifiedBy: Array<{ format: string }>;
    };
    expect(result.kind).toBe('patch');
    expect(result.digest).toBe(pushed.digest);
    expect(result.verifiedBy.map((v) => v.format).sort()).toEqual(['bundle', 'legacy']);
    const inspected = JSON.parse(
      (await splinterCli(['inspect', pushed.pinned, '--plain-http', '--json'], env)).stdout,
    ) as { layers: Array<{ digest: string; size: number; mediaType: string }> };
    const packs = inspected.layers.filter((l) => l.mediaType.endsWith('pack.v1'));
    expect(packs.length).toBeGreaterThan(0);
    // Every pack is cached whole and nothing is unpacked anywhere.
    expect(result.transfer.bytes).toBeGreaterThanOrEqual(packs.reduce((sum, p) => sum + p.size, 0));
    const cached = await readdir(join(work, 'fetch-home', 'packs'));
    for (const { digest } of packs) expect(cached).toContain(digest.slice(7));
    expect((await readdir(work)).filter((n) => n.startsWith('.splinter-staging'))).toEqual([]);

    const again = await fetch('release', 'fetch-home');
    expect(JSON.parse(again.stdout).transfer).toMatchObject({ requests: 0, bytes: 0 });
    const pulled = await pull(
      pushed.pinned,
      'fetched-out',
      ['--key', pub('release'), '--json'],
      'fetch-home',
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(JSON.parse(pulled.stdout).transfer).toMatchObject({ requests: 0, bytes: 0 });
    expect(await snapshot(join(work, 'fetched-out'))).toEqual(await snapshot(SAMPLE));
  });

  it('refuses unsigned artifacts; without a trusted key asks for one; --insecure-skip-verify warns', async () => {
    const pushed = await push('unsigned', []);
    expect(pushed.signatures).toEqual([]);
    const missing = await pull(pushed.pinned, 'unsigned-out', ['--key', pub('release')], 'unsigned-home');
    expect(missing.code).toBe(5);
    expect(missing.stderr).toMatch(/^splinter: SIGNATURE_MISSING: /);
    await nothingWritten('unsigned-out', 'unsigned-home');

    const noKey = await pull(pushed.pinned, 'unsigned-out', [], 'unsigned-home');
    expect(noKey.code).toBe(5);
    expect(noKey.stderr).toMatch(/^splinter: TRUST_REQUIRED: .*--insecure-skip-verify/);

    const both = await pull(pushed.pinned, 'unsigned-out', [
      '--insecure-skip-verify',
      '--key',
      pub('release'),
    ]);
    expect(both.code).toBe(2);

    const skipped = await pull(pushed.pinned, 'unsigned-out', ['--insecure-skip-verify'], 'unsigned-home');
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(skipped.stderr).toMatch(/warning: .*without verifying any signature/);
    expect(await snapshot(join(work, 'unsigned-out'))).toEqual(await snapshot(SAMPLE));
  });

  it('splinter sign signs what is already pushed, in the chosen format', async () => {
    const pushed = await push('later', []);
    const signed = await splinterCli(
      [
        'sign',
        pushed.pinned,
        '--key',
        key('release'),
        '--signature-format',
        'legacy',
        '--plain-http',
        '--json',
      ],
      env,
    );
    expect(signed.code, signed.stderr).toBe(0);
    expect((JSON.parse(signed.stdout) as PushJson).signatures.map((s) => s.format)).toEqual(['legacy']);
    const verified = await splinterCli(
      ['verify', pushed.pinned, '--key', pub('release'), '--plain-http', '--json'],
      env,
    );
    expect((JSON.parse(verified.stdout) as { verified: Array<{ format: string }> }).verified).toEqual([
      expect.objectContaining({ format: 'legacy' }),
    ]);
    const badFormat = await splinterCli(
      ['sign', pushed.pinned, '--key', key('release'), '--signature-format', 'pgp'],
      env,
    );
    expect(badFormat.code).toBe(2);
  });

  it('accepts a rotated key through a trust file, and refuses keys it does not list', async () => {
    const pushed = await push('rotation', ['--key', key('rotated'), '--signature-format', 'bundle']);
    const trustFile = join(work, 'trusted-keys');
    // The old key by path (relative to the trust file), the new one inline.
    const rotatedPem = await readFile(pub('rotated'), 'utf8');
    await writeFile(trustFile, `# release keys, old and new\nrelease.pub  # until 2027\n${rotatedPem}`);
    const pulled = await pull(pushed.pinned, 'rotation-out', ['--trust', trustFile]);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(pulled.stdout).toContain(`verified: bundle signature by ${trustFile}#1`);

    const oldOnly = await pull(pushed.pinned, 'rotation-old', ['--key', pub('release')], 'rotation-home');
    expect(oldOnly.code).toBe(5);
    expect(oldOnly.stderr).toMatch(/^splinter: SIGNATURE_UNTRUSTED: /);
    await nothingWritten('rotation-old', 'rotation-home');
  });

  it('refuses a genuine signature image copied onto another artifact (skopeo does the copying)', async () => {
    const signedPatch = await push('copied', ['--key', key('release'), '--signature-format', 'legacy'], '1');
    const victim = await push('copied', [], '2');
    const repo = `${registry.host}/patches/copied`;
    await run(requireTool('skopeo'), [
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `docker://${repo}:sha256-${signedPatch.digest.slice(7)}.sig`,
      `docker://${repo}:sha256-${victim.digest.slice(7)}.sig`,
    ]);
    const refused = await pull(victim.pinned, 'copied-out', ['--key', pub('release')], 'copied-home');
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/^splinter: SIGNATURE_INVALID: .*names sha256:/);
    await nothingWritten('copied-out', 'copied-home');
  });

  it('refuses a wrong password before uploading anything', async () => {
    const refused = await pushTo(
      ['patch', 'push', SAMPLE, '--realm', 'no-upload', '--version', '1', '--key', key('release')],
      { ...env, COSIGN_PASSWORD: 'not-the-password' },
    );
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/^splinter: KEY_PASSWORD_WRONG: /);
    const tags = await fetch(`http://${registry.host}/v2/patches/no-upload/tags/list`);
    expect(tags.status).toBe(404);
  });

  it('signs and verifies mods the same way', async () => {
    const pushed = await pushTo([
      'mod',
      'push',
      SAMPLE_MOD,
      '--name',
      'minimap',
      '--version',
      '1',
      '--key',
      key('release'),
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const { digest } = JSON.parse(pushed.stdout) as PushJson;
    const reference = `${registry.host}/mods/minimap@${digest}`;
    const pulled = await splinterCli(
      ['mod', 'pull', reference, '--output', join(work, 'mod-out'), '--plain-http', '--key', pub('release')],
      env,
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshot(join(work, 'mod-out'))).toEqual(await snapshot(SAMPLE_MOD));
    const stranger = await splinterCli(
      ['mod', 'pull', reference, '--output', join(work, 'mod-no'), '--plain-http', '--key', pub('stranger')],
      env,
    );
    expect(stranger.code).toBe(5);
  });
});

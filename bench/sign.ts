import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSplinter, settingsFromEnvironment } from '@splintertree/core';
import { sha256Digest } from '@splintertree/oci';
import {
  createSignatureBundle,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
  simpleSigningPayload,
  verifyLegacySignature,
  verifySignatureBundle,
  writeKeyPair,
} from '@splintertree/sign';
import { requireTool, startRegistry } from '@splintertree/testkit';
import { CLI, measure, table } from './support.js';

const SECONDS_PER_CASE = Number(process.env.BENCH_SECONDS ?? 2);
const PULLS = Number(process.env.BENCH_PULLS ?? 7);

/** Runs `operation` back to back for SECONDS_PER_CASE and returns operations per second. */
async function rate(operation: (i: number) => Promise<unknown> | unknown): Promise<number> {
  const until = performance.now() + SECONDS_PER_CASE * 1000;
  const started = performance.now();
  let count = 0;
  while (performance.now() < until) {
    await operation(count);
    count++;
  }
  return count / ((performance.now() - started) / 1000);
}

/** `openssl speed ecdsap256` on one core: the raw P-256 sign/verify rates, for scale. */
function opensslRates(): { sign: number; verify: number } {
  const output = execFileSync(
    requireTool('openssl'),
    ['speed', '-seconds', String(SECONDS_PER_CASE), 'ecdsap256'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const match = /256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(output);
  if (!match) throw new Error(`cannot read openssl speed output:\n${output}`);
  return { sign: Number(match[1]), verify: Number(match[2]) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Signatures created and verified per second in both cosign formats (beside openssl's raw ECDSA
 * P-256 rates), and what verification adds to pulling the small sample patch from a local registry.
 */
export default async function (): Promise<void> {
  const pair = await generateKeyPair('bench');
  const signer = await loadPrivateKey(pair.privateKeyPem, 'bench');
  const trusted = loadPublicKey(pair.publicKeyPem, 'bench.pub');
  const manifests = Array.from({ length: 64 }, (_, i) => Buffer.from(`manifest ${i}`));
  const digests = manifests.map((manifest) => sha256Digest(manifest));
  const payload = simpleSigningPayload(digests[0]!, 'registry.example/patches/bench');
  const legacySignature = Buffer.from(await signer.sign(payload)).toString('base64');
  const bundle = await createSignatureBundle(digests[0]!, signer);

  const rates = {
    legacySign: await rate(async (i) =>
      signer.sign(simpleSigningPayload(digests[i % digests.length]!, 'registry.example/patches/bench')),
    ),
    legacyVerify: await rate(() =>
      verifyLegacySignature(
        {
          mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
          payload,
          annotations: { [SIGNATURE_ANNOTATION]: legacySignature },
        },
        digests[0]!,
        [trusted],
      ),
    ),
    bundleSign: await rate((i) => createSignatureBundle(digests[i % digests.length]!, signer)),
    bundleVerify: await rate(() =>
      verifySignatureBundle(bundle, digests[0]!, [trusted], async () => manifests[0]!),
    ),
  };
  const openssl = opensslRates();
  const perSecond = (n: number) => `${n.toFixed(0)}/s`;
  const row = (operation: string, legacy: number, bundle: number, reference: number) => ({
    operation,
    'legacy .sig': perSecond(legacy),
    'bundle v0.3': perSecond(bundle),
    'openssl speed ecdsap256': perSecond(reference),
    'legacy / openssl': (legacy / reference).toFixed(2),
    'bundle / openssl': (bundle / reference).toFixed(2),
  });
  table([
    row('sign', rates.legacySign, rates.bundleSign, openssl.sign),
    row('verify', rates.legacyVerify, rates.bundleVerify, openssl.verify),
  ]);

  // What verification adds to a pull: the same small patch, pulled into a fresh client each time.
  const work = await mkdtemp(join(tmpdir(), 'splinter-bench-sign-'));
  const registry = await startRegistry();
  try {
    await writeKeyPair(join(work, 'release'), pair);
    const env = { ...process.env, SPLINTER_HOME: join(work, 'home'), COSIGN_PASSWORD: 'bench' };
    const sample = join(import.meta.dirname, '..', 'fixtures', 'sample-patch');
    const pushed = await measure(
      process.execPath,
      [
        CLI,
        'patch',
        'push',
        sample,
        '--realm',
        'bench',
        '--version',
        '1',
        '--registry',
        registry.host,
        '--plain-http',
        '--key',
        join(work, 'release.key'),
        '--json',
      ],
      env,
    );
    const reference = `${registry.host}/patches/bench@${(JSON.parse(pushed.stdout) as { digest: string }).digest}`;
    const pull = (run: number, trust: string[]) =>
      measure(
        process.execPath,
        [CLI, 'patch', 'pull', reference, '--output', join(work, `out-${run}`), '--plain-http', ...trust],
        { ...env, SPLINTER_HOME: join(work, `client-${run}`) },
      );
    const skipped: number[] = [];
    const verified: number[] = [];
    for (let run = 0; run < PULLS; run++) {
      skipped.push((await pull(2 * run, ['--insecure-skip-verify'])).seconds);
      verified.push((await pull(2 * run + 1, ['--key', join(work, 'release.pub')])).seconds);
    }
    // The same checks in one process with warm connections: what verification costs without the noise
    // of process start-up (most of a CLI pull of a small patch).
    const core = await openSplinter({
      settings: settingsFromEnvironment({ SPLINTER_HOME: join(work, 'home') }),
      plainHttp: true,
    });
    const inProcess: number[] = [];
    try {
      for (let run = 0; run < 50; run++) {
        const started = performance.now();
        await core.verify({ reference, keys: [trusted] });
        inProcess.push(performance.now() - started);
      }
    } finally {
      await core.close();
    }
    const without = median(skipped) * 1000;
    const withVerification = median(verified) * 1000;
    console.log();
    table([
      {
        'pull of the sample patch (7 files)': `median of ${PULLS}, fresh client each`,
        '--insecure-skip-verify': `${without.toFixed(0)} ms`,
        '--key (legacy + bundle present)': `${withVerification.toFixed(0)} ms`,
        'verification adds': `${(withVerification - without).toFixed(0)} ms (${((withVerification / without - 1) * 100).toFixed(0)} %)`,
        'in-process verify (warm)': `${median(inProcess).toFixed(1)} ms median`,
      },
    ]);
  } finally {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

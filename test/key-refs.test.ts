import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair } from '@splintertree/sign';
import { type KubernetesApi, startKubernetesApi } from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLE, snapshot, splinterCli, tempDir } from './support.js';

describe('the CLI takes cosign key references', () => {
  let work: string;
  let api: KubernetesApi;
  let env: Record<string, string>;
  let cluster: Record<string, string>;
  beforeAll(async () => {
    work = await tempDir('keyrefs');
    const pair = await generateKeyPair('env-pass');
    const clusterPair = await generateKeyPair('cluster-pass');
    api = await startKubernetesApi({
      dir: work,
      secrets: {
        'release/signing': {
          'cosign.key': clusterPair.privateKeyPem,
          'cosign.pub': clusterPair.publicKeyPem,
          'cosign.password': 'cluster-pass',
        },
        'release/env-public': { 'cosign.pub': pair.publicKeyPem },
      },
    });
    env = { SPLINTER_HOME: join(work, 'home'), RELEASE_KEY: pair.privateKeyPem, COSIGN_PASSWORD: 'env-pass' };
    cluster = {
      KUBERNETES_SERVICE_HOST: api.host,
      KUBERNETES_SERVICE_PORT: String(api.port),
      SPLINTER_K8S_SERVICEACCOUNT_DIR: api.serviceAccountDir,
    };
  });
  afterAll(async () => {
    await api?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('signs with env://, countersigns with k8s://, and verifies with k8s:// public keys', async () => {
    const pushed = await splinterCli(
      [
        'patch',
        'push',
        SAMPLE,
        '--realm',
        'keys',
        '--version',
        '1.0.0',
        '--key',
        'env://RELEASE_KEY',
        '--json',
      ],
      env,
    );
    expect(pushed.code, pushed.stderr).toBe(0);

    // The cluster key's password comes from its secret: COSIGN_PASSWORD (the env key's) is not used.
    const signed = await splinterCli(['sign', 'patches/keys:1.0.0', '--key', 'k8s://release/signing'], {
      ...env,
      ...cluster,
    });
    expect(signed.code, signed.stderr).toBe(0);

    const verified = await splinterCli(
      [
        'verify',
        'patches/keys:1.0.0',
        '--key',
        'k8s://release/signing',
        '--key',
        'k8s://release/env-public',
        '--json',
      ],
      { ...env, ...cluster },
    );
    expect(verified.code, verified.stderr).toBe(0);
    const keys = (JSON.parse(verified.stdout) as { verified: Array<{ key: string }> }).verified.map(
      (v) => v.key,
    );
    expect(new Set(keys)).toEqual(new Set(['k8s://release/signing', 'k8s://release/env-public']));

    const pulled = await splinterCli(
      [
        'patch',
        'pull',
        'patches/keys:1.0.0',
        '--output',
        join(work, 'out'),
        '--key',
        'k8s://release/env-public',
      ],
      { ...env, ...cluster },
    );
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await snapshot(join(work, 'out'))).toEqual(await snapshot(SAMPLE));
  });

  it('exits with the key error code for a missing variable, an outside-cluster k8s:// and a KMS key', async () => {
    const missing = await splinterCli(['sign', 'patches/keys:1.0.0', '--key', 'env://NOT_SET_ANYWHERE'], env);
    expect(missing.code).toBe(5);
    expect(missing.stderr).toContain('KEY_INVALID: env://NOT_SET_ANYWHERE: NOT_SET_ANYWHERE is not set');
    const outside = await splinterCli(['sign', 'patches/keys:1.0.0', '--key', 'k8s://release/signing'], {
      ...env,
      KUBERNETES_SERVICE_HOST: '',
    });
    expect(outside.stderr).toContain('KEY_UNSUPPORTED');
    const kms = await splinterCli(['sign', 'patches/keys:1.0.0', '--key', 'awskms:///alias/release'], env);
    expect(kms.stderr).toContain('KEY_UNSUPPORTED: awskms:///alias/release: awskms keys are not supported');
  });
});

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSigningKeyRef, loadTrustedKeys, readKeyRef } from '@splintertree/core';
import { generateKeyPair, loadPublicKey } from '@splintertree/sign';
import {
  certificateAuthority,
  errorCodeOf,
  type KubernetesApi,
  startKubernetesApi,
} from '@splintertree/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const PASSWORD = 'k8s-secret-pass';

describe('signing keys as cosign names them', () => {
  let dir: string;
  let api: KubernetesApi;
  let pair: { privateKeyPem: string; publicKeyPem: string };
  let cluster: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splinter-keyrefs-'));
    pair = await generateKeyPair(PASSWORD);
    api = await startKubernetesApi({
      dir,
      secrets: {
        // What `cosign generate-key-pair k8s://release/signing` writes.
        'release/signing': {
          'cosign.key': pair.privateKeyPem,
          'cosign.pub': pair.publicKeyPem,
          'cosign.password': PASSWORD,
        },
        'release/public-only': { 'cosign.pub': pair.publicKeyPem },
      },
      forbiddenNamespaces: ['kube-system'],
    });
    cluster = {
      KUBERNETES_SERVICE_HOST: api.host,
      KUBERNETES_SERVICE_PORT: String(api.port),
      SPLINTER_K8S_SERVICEACCOUNT_DIR: api.serviceAccountDir,
    };
  });
  afterAll(async () => {
    await api?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function signsLike(ref: string, env: Record<string, string>, password: () => Promise<string>) {
    const signer = await loadSigningKeyRef(ref, password, env);
    const data = Buffer.from('manifest bytes');
    const trusted = loadPublicKey(pair.publicKeyPem);
    expect(signer.keyId).toBe(trusted.keyId);
    expect(signer.publicKeyPem).toBe(pair.publicKeyPem);
    expect((await signer.sign(data)).byteLength).toBeGreaterThan(60);
  }

  it('reads env://VAR, asking for the password after the key was found', async () => {
    const asked: string[] = [];
    await signsLike('env://RELEASE_KEY', { RELEASE_KEY: pair.privateKeyPem }, async () => {
      asked.push('password');
      return PASSWORD;
    });
    expect(asked).toEqual(['password']);
    expect(await errorCodeOf(loadSigningKeyRef('env://MISSING_KEY', async () => PASSWORD, {}))).toBe(
      'KEY_INVALID',
    );
    expect(await errorCodeOf(readKeyRef('env://not a name', 'private', {}))).toBe('KEY_INVALID');
    expect((await readKeyRef('env://PUB', 'public', { PUB: pair.publicKeyPem })).pem).toBe(pair.publicKeyPem);
  });

  it('reads k8s://NAMESPACE/NAME with the service account, taking cosign.password from the secret', async () => {
    const before = api.log.length;
    await signsLike('k8s://release/signing', cluster, async () => {
      throw new Error('the password must come from the secret');
    });
    expect(api.log.slice(before)).toEqual([
      { request: 'GET /api/v1/namespaces/release/secrets/signing', authorized: true },
    ]);
    const pub = await readKeyRef('k8s://release/signing', 'public', cluster);
    expect(pub.pem).toBe(pair.publicKeyPem);
    expect(pub.password).toBeUndefined();
  });

  it('takes k8s:// and env:// public keys as --key for verification', async () => {
    const previous = process.env.SPLINTER_TEST_PUB;
    process.env.SPLINTER_TEST_PUB = pair.publicKeyPem;
    const saved = { ...process.env };
    Object.assign(process.env, cluster);
    try {
      const keys = await loadTrustedKeys({
        keyFiles: ['k8s://release/public-only', 'env://SPLINTER_TEST_PUB'],
      });
      expect(keys.map((k) => k.source)).toEqual(['k8s://release/public-only', 'env://SPLINTER_TEST_PUB']);
      expect(new Set(keys.map((k) => k.keyId)).size).toBe(1);
    } finally {
      for (const name of Object.keys(cluster)) if (saved[name] === undefined) delete process.env[name];
      if (previous === undefined) delete process.env.SPLINTER_TEST_PUB;
    }
  });

  it('refuses with a specific error: forbidden, unknown, missing field, wrong CA, no cluster, KMS', async () => {
    const refusal = async (
      ref: string,
      env: Record<string, string>,
      kind: 'private' | 'public' = 'private',
    ) => {
      try {
        await readKeyRef(ref, kind, env);
      } catch (error) {
        return { code: await errorCodeOf(Promise.reject(error)), message: (error as Error).message };
      }
      throw new Error(`${ref} was read`);
    };
    expect(await refusal('k8s://kube-system/signing', cluster)).toMatchObject({
      code: 'KEY_INVALID',
      message: expect.stringContaining('needs "get" on secrets in kube-system'),
    });
    expect((await refusal('k8s://release/absent', cluster)).message).toContain(
      'no secret absent in namespace release',
    );
    expect((await refusal('k8s://release/public-only', cluster)).message).toContain(
      'the secret has no cosign.key',
    );
    expect((await refusal('k8s://release', cluster)).message).toContain('expected k8s://NAMESPACE/NAME');

    // A service account whose ca.crt is another CA: the API server's certificate is not trusted.
    const otherCa = join(dir, 'other-sa');
    await mkdir(otherCa);
    await writeFile(join(otherCa, 'token'), 'whatever');
    await writeFile(join(otherCa, 'ca.crt'), certificateAuthority({ dir: otherCa }).certificate);
    const untrusted = await refusal('k8s://release/signing', {
      ...cluster,
      SPLINTER_K8S_SERVICEACCOUNT_DIR: otherCa,
    });
    expect(untrusted).toMatchObject({
      code: 'KEY_INVALID',
      message: expect.stringMatching(/cannot reach the API server .*certificate/),
    });

    expect(await refusal('k8s://release/signing', {})).toMatchObject({
      code: 'KEY_UNSUPPORTED',
      message: expect.stringContaining('KUBERNETES_SERVICE_HOST is not set'),
    });
    for (const ref of [
      'awskms:///alias/release',
      'gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k',
      'hashivault://release',
      'pkcs11:token=release',
    ]) {
      expect((await refusal(ref, {})).code).toBe('KEY_UNSUPPORTED');
    }
  });
});

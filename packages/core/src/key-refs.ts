import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { SplinterError } from '@splintertree/errors';

/** Where Kubernetes mounts a pod's service account (token, ca.crt, namespace). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The secret keys cosign's `generate-key-pair k8s://NS/NAME` writes. */
const SECRET_FIELDS = { private: 'cosign.key', public: 'cosign.pub', password: 'cosign.password' } as const;

const MAX_SECRET_BYTES = 1024 * 1024;

export interface KeyMaterial {
  pem: string;
  /** A password that came with the key (a Kubernetes secret's `cosign.password`), else undefined. */
  password: string | undefined;
  /** How to name the key in messages and results: the file path or the reference. */
  source: string;
}

/**
 * Reads a key as cosign names it: a file path; `env://VAR` (the PEM in an environment variable);
 * `k8s://NAMESPACE/NAME` (a Kubernetes secret holding `cosign.key`, `cosign.pub` and
 * `cosign.password`, read from the API server with the pod's service account). KMS references
 * (`awskms://`, `gcpkms://`, `azurekms://`, `hashivault://`, `pkcs11:`) are refused as unsupported.
 */
export async function readKeyRef(
  ref: string,
  kind: 'private' | 'public',
  env: Record<string, string | undefined> = process.env,
): Promise<KeyMaterial> {
  if (ref.startsWith('env://')) {
    const name = ref.slice('env://'.length);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new SplinterError('KEY_INVALID', `${ref}: not an environment variable name`);
    }
    const value = env[name];
    if (value === undefined || value.trim() === '') {
      throw new SplinterError('KEY_INVALID', `${ref}: ${name} is not set`);
    }
    return { pem: value, password: undefined, source: ref };
  }
  if (ref.startsWith('k8s://')) return readKubernetesSecret(ref, kind, env);
  const scheme = /^([a-z][a-z0-9+.-]*):(\/\/)?/i.exec(ref);
  if (scheme && (scheme[2] !== undefined || scheme[1] === 'pkcs11')) {
    throw new SplinterError(
      'KEY_UNSUPPORTED',
      `${ref}: ${scheme[1]} keys are not supported; use a file, env://VAR or k8s://NAMESPACE/NAME`,
    );
  }
  return { pem: await readKeyFile(ref), password: undefined, source: ref };
}

/** A key file's text (PEM, a trust file, a signed key list); KEY_INVALID when it cannot be read. */
export async function readKeyFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new SplinterError(
      'KEY_INVALID',
      `cannot read key file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * `k8s://NAMESPACE/NAME`, as cosign reads it inside a cluster: GET
 * /api/v1/namespaces/NAMESPACE/secrets/NAME on https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
 * with the service account's bearer token, trusting only the service account's ca.crt.
 * SPLINTER_K8S_SERVICEACCOUNT_DIR moves the service account folder (tests, unusual mounts); a
 * kubeconfig is not read.
 */
async function readKubernetesSecret(
  ref: string,
  kind: 'private' | 'public',
  env: Record<string, string | undefined>,
): Promise<KeyMaterial> {
  const path = ref.slice('k8s://'.length);
  const [namespace, name, ...extra] = path.split('/');
  if (!namespace || !name || extra.length > 0 || !DNS_LABEL.test(namespace) || !SECRET_NAME.test(name)) {
    throw new SplinterError('KEY_INVALID', `${ref}: expected k8s://NAMESPACE/NAME (lower-case DNS names)`);
  }
  const host = env.KUBERNETES_SERVICE_HOST?.trim();
  const port = env.KUBERNETES_SERVICE_PORT?.trim() || '443';
  if (!host) {
    throw new SplinterError(
      'KEY_UNSUPPORTED',
      `${ref}: k8s:// keys are read from inside a cluster (KUBERNETES_SERVICE_HOST is not set); a kubeconfig is not supported`,
    );
  }
  const accountDir = env.SPLINTER_K8S_SERVICEACCOUNT_DIR?.trim() || SERVICE_ACCOUNT_DIR;
  const readAccount = async (file: string) => {
    try {
      return await readFile(join(accountDir, file), 'utf8');
    } catch (error) {
      throw new SplinterError(
        'KEY_INVALID',
        `${ref}: cannot read the service account's ${file} in ${accountDir}: ${(error as NodeJS.ErrnoException).code}`,
      );
    }
  };
  const token = (await readAccount('token')).trim();
  const ca = await readAccount('ca.crt');
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const url = new URL(
    `https://${hostPart}:${port}/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`,
  );
  const { status, body } = await getJson(url, token, ca, ref);
  if (status === 401 || status === 403) {
    throw new SplinterError(
      'KEY_INVALID',
      `${ref}: the API server refused the service account (${status}): it needs "get" on secrets in ${namespace}`,
    );
  }
  if (status === 404)
    throw new SplinterError('KEY_INVALID', `${ref}: no secret ${name} in namespace ${namespace}`);
  if (status !== 200) throw new SplinterError('KEY_INVALID', `${ref}: the API server answered ${status}`);
  let secret: { data?: Record<string, string> };
  try {
    secret = JSON.parse(body) as { data?: Record<string, string> };
  } catch {
    throw new SplinterError('KEY_INVALID', `${ref}: the API server answered no JSON`);
  }
  const field = SECRET_FIELDS[kind];
  const encoded = secret.data?.[field];
  if (typeof encoded !== 'string' || encoded === '') {
    throw new SplinterError('KEY_INVALID', `${ref}: the secret has no ${field}`);
  }
  const password = secret.data?.[SECRET_FIELDS.password];
  return {
    pem: Buffer.from(encoded, 'base64').toString('utf8'),
    password:
      kind === 'private' && typeof password === 'string'
        ? Buffer.from(password, 'base64').toString('utf8')
        : undefined,
    source: ref,
  };
}

function getJson(
  url: URL,
  token: string,
  ca: string,
  ref: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const call = request(
      url,
      {
        method: 'GET',
        ca,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        timeout: 30_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > MAX_SECRET_BYTES) {
            response.destroy();
            reject(new SplinterError('KEY_INVALID', `${ref}: the secret is over ${MAX_SECRET_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        response.on('error', reject);
      },
    );
    call.on('timeout', () => call.destroy(new Error('timed out')));
    call.on('error', (error) =>
      reject(
        error instanceof SplinterError
          ? error
          : new SplinterError(
              'KEY_INVALID',
              `${ref}: cannot reach the API server ${url.origin}: ${error.message}`,
            ),
      ),
    );
    call.end();
  });
}

import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { certificateAuthority } from './certificate.js';

export interface KubernetesApi {
  /** KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, as the kubelet sets them in a pod. */
  host: string;
  port: number;
  /** A service account folder (`token`, `ca.crt`, `namespace`) as Kubernetes mounts it in a pod. */
  serviceAccountDir: string;
  /** Requests seen, as `METHOD path` with whether the bearer token was the service account's. */
  log: Array<{ request: string; authorized: boolean }>;
  stop(): Promise<void>;
}

/**
 * A small https server that answers the one Kubernetes API call a `k8s://NAMESPACE/NAME` key needs,
 * `GET /api/v1/namespaces/NAMESPACE/secrets/NAME`, as the API server does: a v1 Secret with
 * base64 `data`, 401 without the service account's bearer token, 403 for a namespace the account may
 * not read (`forbiddenNamespaces`), 404 for an unknown secret. Its certificate comes from a private CA
 * written as the service account's `ca.crt`, so a client that trusts anything else fails.
 */
export async function startKubernetesApi(options: {
  dir: string;
  /** `namespace/name` → the secret's data, in plain text (encoded to base64 here). */
  secrets: Record<string, Record<string, string>>;
  forbiddenNamespaces?: string[];
}): Promise<KubernetesApi> {
  const ca = certificateAuthority({ dir: options.dir, commonName: 'splinter-test-kubernetes-ca' });
  const serving = ca.issue({
    name: 'kube-apiserver',
    dnsNames: ['kubernetes.default.svc'],
    ipAddresses: ['127.0.0.1'],
  });
  const serviceAccountDir = join(options.dir, 'serviceaccount');
  await mkdir(serviceAccountDir, { recursive: true });
  const token = `sa-token-${Math.random().toString(36).slice(2)}`;
  await writeFile(join(serviceAccountDir, 'token'), `${token}\n`);
  await writeFile(join(serviceAccountDir, 'ca.crt'), ca.certificate);
  await writeFile(join(serviceAccountDir, 'namespace'), 'default');
  const log: KubernetesApi['log'] = [];
  const status = (code: number, reason: string, message: string) =>
    JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code });
  const server = createServer({ key: serving.key, cert: serving.certificate }, (request, response) => {
    const authorized = request.headers.authorization === `Bearer ${token}`;
    log.push({ request: `${request.method} ${request.url}`, authorized });
    request.resume();
    const json = { 'content-type': 'application/json' };
    if (!authorized) {
      response.writeHead(401, json).end(status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/?]+)$/.exec(request.url ?? '');
    if (request.method !== 'GET' || !match) {
      response
        .writeHead(404, json)
        .end(status(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    const [namespace, name] = [decodeURIComponent(match[1]!), decodeURIComponent(match[2]!)];
    if (options.forbiddenNamespaces?.includes(namespace)) {
      response
        .writeHead(403, json)
        .end(
          status(
            403,
            'Forbidden',
            `secrets "${name}" is forbidden: cannot get resource "secrets" in "${namespace}"`,
          ),
        );
      return;
    }
    const data = options.secrets[`${namespace}/${name}`];
    if (!data) {
      response.writeHead(404, json).end(status(404, 'NotFound', `secrets "${name}" not found`));
      return;
    }
    const encoded = Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    );
    response.writeHead(200, json).end(
      JSON.stringify({
        kind: 'Secret',
        apiVersion: 'v1',
        metadata: { name, namespace },
        type: 'Opaque',
        data: encoded,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    host: '127.0.0.1',
    port,
    serviceAccountDir,
    log,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

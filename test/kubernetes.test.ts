import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool } from '@splintertree/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);
const KUSTOMIZE_ROOT = join(import.meta.dirname, '..', 'deploy', 'kubernetes');

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  ports?: Array<{ name: string; containerPort: number }>;
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}

interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  initContainers?: Container[];
  containers: Container[];
  volumes?: Array<{ name: string; secret?: { secretName: string } }>;
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered objects are checked field by field below
  spec?: any;
}

async function render(path: string): Promise<K8sObject[]> {
  const { stdout } = await run(requireTool('kubectl'), ['kustomize', join(KUSTOMIZE_ROOT, path)], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return parseAllDocuments(stdout).map((document) => {
    if (document.errors.length > 0) throw new Error(`kubectl kustomize gave bad YAML: ${document.errors[0]}`);
    return document.toJS() as K8sObject;
  });
}

/** The kubernetes-models class for an object's apiVersion and kind (the Kubernetes OpenAPI schemas). */
async function modelFor(object: { apiVersion: string; kind: string }) {
  const [group, version] = object.apiVersion.includes('/')
    ? object.apiVersion.split('/')
    : ['', object.apiVersion];
  const module = (await import(
    `kubernetes-models/${group ? `${group}/` : ''}${version}/${object.kind}`
  )) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = module[object.kind];
  if (!Model) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  return Model;
}

async function validationError(object: K8sObject): Promise<string | undefined> {
  const Model = await modelFor(object);
  try {
    new Model(object).validate();
    return undefined;
  } catch (error) {
    return `${object.kind}/${object.metadata.name}: ${(error as Error).message}`;
  }
}

function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name);
  if (!found)
    throw new Error(`no ${kind}/${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}

const podSpecOf = (object: K8sObject): PodSpec => object.spec.template.spec as PodSpec;
const envOf = (container: Container, name: string) => container.env?.find((entry) => entry.name === name);

describe('Kubernetes manifests (deploy/kubernetes, kubectl kustomize)', () => {
  let base: K8sObject[];
  let example: K8sObject[];
  beforeAll(async () => {
    [base, example] = await Promise.all([render('base'), render('overlays/example')]);
  });

  it('renders objects that all validate against the Kubernetes schemas', async () => {
    expect(base.map((object) => `${object.kind}/${object.metadata.name}`).sort()).toEqual([
      'ConfigMap/splinter-config',
      'Deployment/splinter-activator',
      'Deployment/splinter-api',
      'HorizontalPodAutoscaler/splinter-api',
      'Job/splinter-db-migrate',
      'PodDisruptionBudget/splinter-api',
      'Service/splinter-api',
      'ServiceAccount/splinter',
    ]);
    const problems = [];
    for (const object of [...base, ...example]) problems.push(await validationError(object));
    expect(problems.filter(Boolean)).toEqual([]);
  });

  it('has a validator that refuses a broken object', async () => {
    const broken = structuredClone(find(base, 'Deployment', 'splinter-api'));
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
    expect(await validationError(broken)).toMatch(/containerPort must be integer/);
    const portless = structuredClone(find(base, 'Service', 'splinter-api'));
    delete portless.spec.ports[0].port;
    expect(await validationError(portless)).toMatch(/spec\/ports\/0 must have required property port/);
    const selectorless = structuredClone(find(base, 'Deployment', 'splinter-activator'));
    delete selectorless.spec.selector;
    expect(await validationError(selectorless)).toMatch(/data\/spec must have required property selector/);
  });

  it('runs every workload as a non-root user, without privilege escalation, within resource limits', () => {
    for (const object of base.filter((o) => o.kind === 'Deployment' || o.kind === 'Job')) {
      const pod = podSpecOf(object);
      expect(pod.securityContext, object.metadata.name).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 10001,
      });
      for (const container of [...(pod.initContainers ?? []), ...pod.containers]) {
        const where = `${object.metadata.name}/${container.name}`;
        expect(container.image, where).toBe('ghcr.io/splintertree/splinter:0.1.0');
        expect(container.securityContext, where).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(container.resources?.requests?.memory, where).toBeDefined();
        expect(container.resources?.limits?.memory, where).toBeDefined();
      }
    }
  });

  it('probes the API for readiness on /readyz and liveness on /healthz, and scrapes metrics on their own port', () => {
    const api = find(base, 'Deployment', 'splinter-api');
    const container = podSpecOf(api).containers.find((c) => c.name === 'api')!;
    expect(container.args).toEqual(['serve', '--host', '0.0.0.0', '--port', '8080']);
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(container.ports).toEqual([
      { name: 'http', containerPort: 8080 },
      { name: 'metrics', containerPort: 9464 },
    ]);
    expect(envOf(container, 'SPLINTER_API_METRICS_PORT')?.value).toBe('9464');
    expect(api.spec.template.metadata.annotations).toEqual({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '9464',
      'prometheus.io/path': '/metrics',
    });
    expect(api.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);

    // The Service, the PDB and the HPA all point at the API's pods.
    const podLabels = api.spec.template.metadata.labels as Record<string, string>;
    const service = find(base, 'Service', 'splinter-api');
    expect(podLabels).toMatchObject(service.spec.selector);
    expect(service.spec.ports.map((p: { targetPort: string }) => p.targetPort)).toEqual(['http', 'metrics']);
    expect(podLabels).toMatchObject(
      find(base, 'PodDisruptionBudget', 'splinter-api').spec.selector.matchLabels,
    );
    expect(find(base, 'HorizontalPodAutoscaler', 'splinter-api').spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'splinter-api',
    });
  });

  it('takes DATABASE_URL and the KEK from Secrets, the owner URL only in the migration Job', () => {
    const secretOf = (container: Container) => envOf(container, 'DATABASE_URL')?.valueFrom?.secretKeyRef;
    const api = podSpecOf(find(base, 'Deployment', 'splinter-api'));
    const activator = podSpecOf(find(base, 'Deployment', 'splinter-activator'));
    const job = podSpecOf(find(base, 'Job', 'splinter-db-migrate'));
    for (const container of [
      ...api.containers,
      ...api.initContainers!,
      ...activator.containers,
      ...activator.initContainers!,
    ]) {
      expect(secretOf(container), container.name).toEqual({ name: 'splinter-database', key: 'url' });
    }
    expect(secretOf(job.containers[0]!)).toEqual({ name: 'splinter-database-owner', key: 'url' });
    const apiContainer = api.containers[0]!;
    expect(envOf(apiContainer, 'SPLINTER_KEK_FILE')?.value).toBe('/run/secrets/splinter/kek');
    expect(envOf(apiContainer, 'SPLINTER_KEK')).toBeUndefined();
    const kekVolume = api.volumes?.find((volume) => volume.secret?.secretName === 'splinter-kek');
    expect(kekVolume).toBeDefined();
    // The file is the kubelet's (root): readable through fsGroup, by the pod's group 10001.
    expect((kekVolume!.secret as { defaultMode?: number }).defaultMode).toBe(0o440);
    expect((api.securityContext as { fsGroup?: number }).fsGroup).toBe(10001);
    expect(apiContainer.volumeMounts).toContainEqual(
      expect.objectContaining({ name: kekVolume!.name, mountPath: '/run/secrets/splinter' }),
    );
    // No Secret is rendered: they are the operator's, made outside the manifests.
    expect([...base, ...example].filter((object) => object.kind === 'Secret')).toEqual([]);
  });

  it('migrates in a Job and holds the API and the activator until the schema is current', () => {
    const job = find(base, 'Job', 'splinter-db-migrate');
    expect(podSpecOf(job).containers[0]!.args).toEqual(['db', 'migrate']);
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    for (const name of ['splinter-api', 'splinter-activator']) {
      const init = podSpecOf(find(base, 'Deployment', name)).initContainers ?? [];
      expect(
        init.map((c) => c.args),
        name,
      ).toEqual([['db', 'status', '--check', '--wait', '600']]);
    }
    const activator = find(base, 'Deployment', 'splinter-activator');
    expect(activator.spec.replicas).toBe(1);
    expect(podSpecOf(activator).containers[0]!.args?.slice(0, 2)).toEqual(['activator', 'run']);
    expect(podSpecOf(activator).containers[0]!.args).toContain('--watch');
  });

  it('adds the Ingress only through its component, routing the launcher routes to the http port', () => {
    expect(base.some((object) => object.kind === 'Ingress')).toBe(false);
    const ingress = find(example, 'Ingress', 'splinter-api');
    const paths = ingress.spec.rules[0].http.paths as Array<{ path: string; backend: unknown }>;
    expect(paths).toEqual([
      {
        path: '/launcher',
        pathType: 'Prefix',
        backend: { service: { name: 'splinter-api', port: { name: 'http' } } },
      },
    ]);
    const api = find(example, 'Deployment', 'splinter-api');
    expect(envOf(podSpecOf(api).containers[0]!, 'SPLINTER_API_TRUST_PROXY')?.value).toBe('10.42.0.0/16');
    expect(
      example.every(
        (object) =>
          (object.metadata as { namespace?: string }).namespace === 'splinter' || object.kind === 'Namespace',
      ),
    ).toBe(true);
  });
});

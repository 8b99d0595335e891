// The container kit (deploy/compose.yaml, deploy/kubernetes/, the Dockerfile's HEALTHCHECK)
// cannot run here: no container engine, no cluster. What can be checked without one is checked:
// every file they name exists, every coatcheck configuration in them passes `check-config` (the
// built CLI, with the environment they give it), and the ports, probe paths, config path, user
// and image they use agree with the Dockerfile, the configurations and the CLI. The HEALTHCHECK's
// command and the probe paths are run against a real coatcheck.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { parseListen } from '../../src/config/values.js';
import { REPO_ROOT, runCli, runCliToEnd, within } from '../helpers/coatcheck.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const DEPLOY = join(REPO_ROOT, 'deploy');
const TEST_SECRET = 'Deploy-Kit-Secret-0123456789abcdefghijklmnop';
const PKG = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };

const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
/** The runtime stage: everything after the last FROM. */
const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
const IMAGE_CONFIG = /^ENV COATCHECK_CONFIG=(\S+)$/m.exec(runtime)?.[1] ?? '';
const IMAGE_PORT = Number(/^EXPOSE (\d+)$/m.exec(runtime)?.[1]);
const IMAGE_USER = /^USER (\S+)$/m.exec(runtime)?.[1] ?? '';


/** Runs the built CLI to its end. */
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCliToEnd(args, env);

/** `${VAR}` and `${VAR:-default}` names a configuration reads from the environment. */
function envNames(text: string): string[] {
  return [...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}/g)].map((m) => m[1] as string);
}

let dir: string;
/** check-config on a configuration text with `env`; asserts it passes and returns the effective configuration. */
async function checkConfig(text: string, env: NodeJS.ProcessEnv, what: string): Promise<Record<string, unknown>> {
  const file = join(dir, `${what.replace(/[^a-z0-9]+/gi, '-')}.yaml`);
  await writeFile(file, text);
  const r = await cli(['check-config', '--config', file], env);
  assert.equal(r.code, 0, `${what} fails check-config:\n${r.stderr}`);
  return parseYaml(r.stdout) as Record<string, unknown>;
}

describe('the container kit', () => {
  before(async () => {
    assert.ok(existsSync(join(REPO_ROOT, 'dist', 'cli.js')), 'dist/cli.js is missing: run npm run build first');
    dir = await mkdtemp(join(tmpdir(), 'coatcheck-deploy-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the Dockerfile: the config path, port and user the kit relies on; HEALTHCHECK runs the CLI\'s healthcheck', async () => {
    assert.equal(IMAGE_CONFIG, '/etc/coatcheck/config.yaml');
    assert.equal(IMAGE_PORT, 8080);
    assert.equal(IMAGE_USER, 'node');
    const hc = /^HEALTHCHECK (.*) CMD (\[.*\])$/m.exec(runtime);
    assert.ok(hc, 'the runtime stage has a HEALTHCHECK in exec form');
    assert.deepEqual(JSON.parse(hc[2] as string), ['node', '/app/dist/cli.js', 'healthcheck']);
    assert.ok(!/No HEALTHCHECK/.test(dockerfile), 'the stale comment is gone');
    assert.match((await cli(['--help'])).stdout, /coatcheck healthcheck/);
  });

  describe('deploy/compose.yaml', () => {
    interface Service {
      image?: string;
      build?: { context: string; dockerfile: string };
      command?: string[];
      environment?: Record<string, string>;
      volumes?: string[];
      ports?: string[];
      depends_on?: Record<string, { condition: string }>;
    }
    const compose = parseYaml(readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };
    const services = compose.services;
    const coatchecks = Object.entries(services).filter(([, s]) => s.build !== undefined);
    const nginx = readFileSync(join(DEPLOY, 'compose', 'nginx.conf'), 'utf8');

    test('Redis, the demo app, two coatcheck instances built from the Dockerfile, and a load balancer from an official image', () => {
      assert.equal(coatchecks.length, 2);
      for (const [name, s] of coatchecks) {
        assert.ok(existsSync(join(DEPLOY, s.build?.context ?? '?', s.build?.dockerfile ?? '?')), `${name}: the Dockerfile it builds exists`);
        assert.equal(resolve(DEPLOY, s.build?.context ?? ''), resolve(REPO_ROOT), `${name}: built from the repository root`);
      }
      assert.match(services.redis?.image ?? '', /^redis:\d/);
      assert.match(services.lb?.image ?? '', /^nginx:\d/);
      assert.match(services['demo-app']?.image ?? '', /^node:24/);
    });

    test('every file it mounts exists; every depends_on names a service', () => {
      let mounts = 0;
      for (const [name, s] of Object.entries(services)) {
        for (const v of s.volumes ?? []) {
          const source = v.split(':')[0] as string;
          assert.ok(source.startsWith('.'), `${name}: ${v} is a bind mount of a repository file`);
          assert.ok(existsSync(join(DEPLOY, source)), `${name}: ${source} does not exist`);
          mounts++;
        }
        for (const dep of Object.keys(s.depends_on ?? {})) assert.ok(services[dep], `${name} depends on ${dep}, which is not a service`);
      }
      assert.ok(mounts >= 4);
      // The demo app mounted is the one the demo runs.
      assert.ok(services['demo-app']?.command?.some((c) => c.endsWith('demo-app.mjs')));
    });

    test('the coatcheck configuration passes check-config and agrees with the image, nginx, the app and the published ports', async () => {
      for (const [name, s] of coatchecks) {
        const mount = (s.volumes ?? []).find((v) => v.split(':')[1] === IMAGE_CONFIG);
        assert.ok(mount, `${name}: mounts its configuration at the image's COATCHECK_CONFIG (${IMAGE_CONFIG})`);
        const text = readFileSync(join(DEPLOY, mount.split(':')[0] as string), 'utf8');
        // The environment compose gives it is what the configuration reads.
        for (const v of envNames(text)) assert.ok(s.environment?.[v] !== undefined, `${name}: the configuration reads \${${v}}, which compose does not set`);
        const config = await checkConfig(text, { COATCHECK_SECRET: TEST_SECRET }, `compose ${name}`);
        const listen = parseListen(config.listen as string);
        assert.equal(listen?.host, '0.0.0.0', 'listens on every interface, as a container must');
        assert.equal(listen?.port, IMAGE_PORT, 'on the port the image exposes');
        const admin = parseListen((config.admin as { listen: string }).listen);
        assert.equal(admin?.host, '0.0.0.0', 'the admin listener is reachable from outside the container');
        assert.ok((s.ports ?? []).some((p) => p.endsWith(`:${admin?.port}`)), `${name} publishes its admin port ${admin?.port}`);
        assert.ok(nginx.includes(`server ${name}:${listen?.port};`), `nginx balances over ${name}:${listen?.port}`);
        const upstream = new URL(config.upstream as string);
        assert.ok(services[upstream.hostname], `the upstream ${upstream.hostname} is a service`);
        assert.equal(services['demo-app']?.environment?.DEMO_PORT, upstream.port, 'the demo app listens on the upstream port');
        const store = config.store as { kind: string; url: string };
        assert.equal(store.kind, 'redis');
        assert.ok(services[new URL(store.url).hostname], 'Redis is a service');
      }
      assert.ok(services.lb?.ports?.some((p) => p.endsWith(':8080')) && /listen 8080;/.test(nginx));
    });
  });

  describe('deploy/kubernetes', () => {
    const K8S = join(DEPLOY, 'kubernetes');
    type Doc = { kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: unknown };
    const kustomization = parseYaml(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    const docs: Doc[] = kustomization.resources.map((f) => {
      assert.ok(existsSync(join(K8S, f)), `kustomization names ${f}, which does not exist`);
      return parseYaml(readFileSync(join(K8S, f), 'utf8')) as Doc;
    });
    const byKind = (kind: string) => {
      const d = docs.find((x) => x.kind === kind);
      assert.ok(d, `a ${kind}`);
      return d as Doc & Record<string, never>;
    };
    interface Container {
      image: string;
      env: Array<{ name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
      ports: Array<{ name: string; containerPort: number }>;
      readinessProbe: { httpGet: { path: string; port: string } };
      livenessProbe: { httpGet: { path: string; port: string } };
      lifecycle?: { preStop?: { exec?: { command: string[] } } };
      resources: { requests: { cpu: string; memory: string }; limits?: { memory?: string } };
      securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean };
      volumeMounts: Array<{ name: string; mountPath: string }>;
    }
    interface PodSpec {
      terminationGracePeriodSeconds: number;
      securityContext: { runAsNonRoot: boolean; runAsUser: number };
      containers: Container[];
      volumes: Array<{ name: string; configMap?: { name: string } }>;
    }
    const deployment = byKind('Deployment') as unknown as { spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } };
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0] as Container;
    const configMap = byKind('ConfigMap') as unknown as { metadata: { name: string }; data: Record<string, string> };
    const secret = byKind('Secret') as unknown as { metadata: { name: string }; stringData: Record<string, string> };
    const service = byKind('Service') as unknown as { spec: { selector: Record<string, string>; ports: Array<{ name: string; targetPort: string }> } };
    const pdb = byKind('PodDisruptionBudget') as unknown as { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } };
    const portOf = (name: string) => container.ports.find((p) => p.name === name)?.containerPort;

    test('the configuration is the ConfigMap, mounted where the image reads it; the environment it reads comes from the Secret', async () => {
      const mount = container.volumeMounts.find((m) => pod.volumes.find((v) => v.name === m.name)?.configMap?.name === configMap.metadata.name);
      assert.ok(mount, 'the ConfigMap is mounted');
      assert.equal(mount.mountPath, posix.dirname(IMAGE_CONFIG));
      const text = configMap.data[posix.basename(IMAGE_CONFIG)];
      assert.ok(text, `the ConfigMap has ${posix.basename(IMAGE_CONFIG)}`);
      const env: NodeJS.ProcessEnv = {};
      for (const e of container.env) {
        const ref = e.valueFrom?.secretKeyRef;
        assert.ok(ref, `${e.name} comes from a Secret`);
        assert.equal(ref.name, secret.metadata.name);
        assert.ok(ref.key in secret.stringData, `the Secret has ${ref.key}`);
        // The Secret's values are empty on purpose (secret.yaml); the test gives real-looking ones.
        env[e.name] = e.name === 'REDIS_URL' ? 'redis://:password@redis:6379/0' : TEST_SECRET;
      }
      for (const v of envNames(text)) assert.ok(env[v] !== undefined, `the configuration reads \${${v}}, which the Deployment does not set`);
      const config = await checkConfig(text, env, 'kubernetes configmap');
      assert.equal(parseListen(config.listen as string)?.port, portOf('http'), 'containerPort http is the listen port');
      assert.equal(parseListen(config.listen as string)?.port, IMAGE_PORT);
      assert.equal(parseListen((config.admin as { listen: string }).listen)?.port, portOf('admin'), 'containerPort admin is admin.listen');
      assert.equal(parseListen((config.admin as { listen: string }).listen)?.host, '0.0.0.0', 'the kubelet reaches the admin listener on the pod address');
      assert.equal(config.workers, 1, 'one process per pod: pods scale');
      // The pod is given time to drain: preStop pause + shutdownTimeout, within the grace period.
      const preStop = Number(container.lifecycle?.preStop?.exec?.command[1] ?? 0);
      const shutdown = Number(/^(\d+)s$/.exec(config.shutdownTimeout as string)?.[1]);
      assert.ok(preStop + shutdown < pod.terminationGracePeriodSeconds, `${preStop}s + ${shutdown}s < ${pod.terminationGracePeriodSeconds}s`);
      // An empty Secret must not start: coatcheck refuses an empty secret.
      const empty = await cli(['check-config', '--config', join(dir, 'kubernetes-configmap.yaml')], { ...env, COATCHECK_SECRET: '' });
      assert.equal(empty.code, 2);
    });

    test('probes: readiness /readyz and liveness /healthz on the admin port', () => {
      assert.deepEqual(container.readinessProbe.httpGet, { path: '/readyz', port: 'admin' });
      assert.deepEqual(container.livenessProbe.httpGet, { path: '/healthz', port: 'admin' });
    });

    test('non-root (the image\'s node user), read-only root filesystem, no privilege escalation, resource requests', () => {
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(IMAGE_USER, 'node');
      assert.equal(pod.securityContext.runAsUser, 1000, 'the node user of the official image is uid 1000');
      assert.equal(container.securityContext.readOnlyRootFilesystem, true);
      assert.equal(container.securityContext.allowPrivilegeEscalation, false);
      assert.match(container.resources.requests.cpu, /^\d+m$/);
      assert.match(container.resources.requests.memory, /^\d+Mi$/);
      assert.match(container.image, new RegExp(`^coatcheck:${PKG.version.replace(/\./g, '\\.')}$`), 'the image is tagged with the package version');
    });

    test('the Service and the PodDisruptionBudget select the Deployment\'s pods; the Service targets its named ports', () => {
      const labels = deployment.spec.template.metadata.labels;
      const selects = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
      assert.ok(selects(deployment.spec.selector.matchLabels));
      assert.ok(selects(service.spec.selector));
      assert.ok(selects(pdb.spec.selector.matchLabels));
      for (const p of service.spec.ports) assert.ok(portOf(p.targetPort), `Service port ${p.name} targets ${p.targetPort}, a container port`);
      assert.ok(pdb.spec.minAvailable >= 1);
    });
  });

  describe('the probe paths and the HEALTHCHECK command against a running coatcheck', () => {
    let up: Upstream;
    before(async () => {
      up = await startUpstream();
    });
    after(() => up?.close());

    test('healthcheck: 0 while the admin /healthz answers; 1 with a reason when nothing listens, or without an admin listener', async (t) => {
      const base = ['listen: "127.0.0.1:0"', `upstream: "${up.origin}"`, `secrets: ["${TEST_SECRET}"]`, 'cookie: { name: coatcheck, secure: false }', 'log: { level: info }'];
      const file = join(dir, 'running.yaml');
      // A fixed admin port is needed for the healthcheck to find it: take a free one first.
      const { freePort } = await import('../helpers/redis-server.js');
      const adminPort = await freePort();
      await writeFile(file, [...base, `admin: { listen: "127.0.0.1:${adminPort}" }`, ''].join('\n'));
      const running = runCli(['--config', file]);
      t.after(() => {
        if (running.proc.exitCode === null) running.proc.kill('SIGKILL');
      });
      await within(running.stdout.waitFor((l) => l.msg === 'listening'), `not listening: ${running.stderr()}`);
      for (const path of ['/healthz', '/readyz']) assert.equal((await fetch(`http://127.0.0.1:${adminPort}${path}`)).status, 200, path);
      assert.deepEqual(await cli(['healthcheck', '--config', file]), { code: 0, stdout: '', stderr: '' });
      running.proc.kill('SIGTERM');
      assert.equal(await running.exited, 0);
      const down = await cli(['healthcheck', '--config', file]);
      assert.equal(down.code, 1);
      assert.match(down.stderr, new RegExp(`not healthy: http://127\\.0\\.0\\.1:${adminPort}/healthz: ECONNREFUSED`));
      const none = join(dir, 'no-admin.yaml');
      await writeFile(none, [...base, ''].join('\n'));
      const noAdmin = await cli(['healthcheck'], { COATCHECK_CONFIG: none });
      assert.equal(noAdmin.code, 1);
      assert.match(noAdmin.stderr, /no admin listener to ask: set admin\.listen/);
    });
  });
});



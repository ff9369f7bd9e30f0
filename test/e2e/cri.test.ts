/**
 * Kubernetes' CRI drives Corral as kubelet would: Debian's containerd 1.6 with the CRI plugin and a runtime
 * handler `corral` (runtime_type io.containerd.corral.v2, the shim), a pause image as the sandbox image, a CNI
 * bridge. One pod with two busybox containers: both run in the pod's one QEMU guest, sized by the pod's Kata
 * annotations (enabled by the handler's runtime config: `corral up`'s config enables none); ExecSync (output,
 * exit code, timeout), ContainerStats, CRI-format container logs; a missing image fails cleanly; stopping and
 * removing the pod leaves no shim, mount, QEMU, VMM user, sandbox dir or network namespace, and stopping
 * containerd leaves no CNI bridge. Guest networking is loopback only: nothing here needs the network.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { RUNTIME_TYPE, writeLauncher } from '../../src/shim/launcher.ts';
import { startContainerd, type Containerd } from '../helpers/containerd.ts';
import {
  criClient,
  type ContainerConfig,
  type CriClient,
  type PodSandboxConfig,
  type Req,
} from '../helpers/cri/client.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { buildBusyboxImage, buildPauseImage } from '../helpers/oci-image.ts';
import { waitFor } from '../helpers/wait.ts';

const PAUSE = 'registry.k8s.io/pause:3.6';
const IMAGE = 'docker.io/library/busybox-local:latest';
const HANDLER = 'corral';
const VCPUS = 2;
const MEMORY_MIB = 256;
const KATA = 'io.katacontainers.config.hypervisor.';

let work: string;
let c: Containerd;
let n: TestNode;
let cri: CriClient;
let podId = '';
const containers: Record<string, string> = {};
const netnsOnHost = () => (existsSync('/var/run/netns') ? readdirSync('/var/run/netns').sort() : []);
let netnsBefore: string[] = [];
/** Where containerd 1.6 mounts pod network namespaces with `netns_mounts_under_state_dir`. */
const netnsDir = () => join(c.state, 'io.containerd.grpc.v1.cri/netns');
const netnsOfPods = () => (existsSync(netnsDir()) ? readdirSync(netnsDir()) : []);
/** Host ends of veths on the pod bridge. */
const bridgePorts = () => {
  const d = `/sys/class/net/${c.bridge}/brif`;
  return existsSync(d) ? readdirSync(d) : [];
};
const qemuOf = (id: string) => processesMatching(`-name corral-${id} `);

beforeAll(async () => {
  netnsBefore = netnsOnHost();
  work = mkdtempSync('/tmp/crl-cri-');
  const shimDir = join(work, 'bin');
  mkdirSync(shimDir);
  // The handler's runtime config: `corral up`'s, with the sizing annotations enabled (Kata honours
  // `io.katacontainers.config.hypervisor.*` only when enable_annotations lists them; `corral up` lists none).
  const conf = join(work, 'configuration.toml');
  writeFileSync(
    conf,
    localRuntimeConfig(join(REPO, '.corral/guest')).replace(
      '[hypervisor.qemu]\n',
      '[hypervisor.qemu]\nenable_annotations = ["default_vcpus", "default_memory"]\n',
    ),
  );
  const runtime = `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${HANDLER}]`;
  c = await startContainerd({
    pathPrefix: [shimDir],
    cri: true,
    namespace: 'k8s.io', // CRI's namespace: ctr imports the images there
    sandboxImage: PAUSE,
    // Pod network namespaces under containerd's state dir (not /var/run/netns): its stop sweeps them.
    criToml: '  netns_mounts_under_state_dir = true',
    // Naming a runtime replaces CRI's default map: runc (the default_runtime_name) must be named too.
    extraToml: [
      `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"`,
      `${runtime}\n  runtime_type = ${JSON.stringify(RUNTIME_TYPE)}\n  pod_annotations = ["io.katacontainers.*"]`,
      `${runtime.slice(0, -1)}.options]\n  ConfigPath = ${JSON.stringify(conf)}`,
    ].join('\n'),
  });
  // CRI's sandbox files (hosts, resolv.conf, hostname) live under containerd's root; the bundles and the
  // sandbox /dev/shm under its state.
  n = await testNode({ bundleRoots: [c.state, c.root] });
  writeLauncher(shimDir, { env: { CORRAL_NATS_URL: n.natsUrl, CORRAL_NODE: n.node } });
  const images = join(work, 'images');
  await c.importImage(await buildPauseImage(images, { name: PAUSE }));
  await c.importImage(await buildBusyboxImage(images, { name: IMAGE }));
  cri = criClient(c.criAddress!);
});

afterAll(async () => {
  // A failed test leaves its pod: remove it as kubelet would, then whatever the agent still holds.
  if (cri && podId) {
    await cri.stopPodSandbox({ podSandboxId: podId }).catch(() => undefined);
    await cri.removePodSandbox({ podSandboxId: podId }).catch(() => undefined);
  }
  cri?.close();
  await c?.stop();
  if (n) {
    const left = await n.call<{ tasks: { id: string; kind: string }[] }>('list', {}).catch(() => ({ tasks: [] }));
    const order = [...left.tasks].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'container' ? -1 : 1));
    await n.removeTasks(order.map((t) => t.id));
    await n.cleanup();
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A plain pod as kubelet asks for it: own network and IPC namespaces, a pid namespace per container, no seccomp. */
const SECURITY = {
  namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
  seccomp: { profileType: 'Unconfined' },
} as const;
const podConfig = (): Req<PodSandboxConfig> => ({
  metadata: { name: 'p1', uid: randomBytes(8).toString('hex'), namespace: 'default', attempt: 0 },
  hostname: 'p1',
  logDirectory: join(work, 'logs/p1'),
  labels: { app: 'cri-e2e' },
  annotations: { [`${KATA}default_vcpus`]: String(VCPUS), [`${KATA}default_memory`]: String(MEMORY_MIB) },
  linux: { securityContext: SECURITY },
});
let pod: Req<PodSandboxConfig>;

/** `readonlyRootfs`: a read-only root, as pods with readOnlyRootFilesystem have. */
const containerConfig = (
  name: string,
  image: string,
  script: string,
  readonlyRootfs = false,
): Req<ContainerConfig> => ({
  metadata: { name, attempt: 0 },
  image: { image, annotations: {} },
  command: ['sh', '-c', script],
  envs: [{ key: 'WHO', value: name }],
  logPath: `${name}.log`,
  linux: { securityContext: { ...SECURITY, readonlyRootfs } },
});

const grpcCode = (e: unknown) => (e as { code?: number }).code;

describe('CRI with the corral runtime handler', () => {
  it('RunPodSandbox boots one QEMU guest sized by the pod’s Kata annotations, in a pod network namespace', async () => {
    expect((await cri.version({ version: 'v1' })).runtimeApiVersion).toBe('v1');
    expect((await cri.images.imageStatus({ image: { image: PAUSE } })).image?.repoTags).toContain(PAUSE);
    pod = podConfig();
    ({ podSandboxId: podId } = await cri.runPodSandbox(
      { config: pod, runtimeHandler: HANDLER },
      { timeoutMs: 90_000 },
    ));
    const st = (await cri.podSandboxStatus({ podSandboxId: podId })).status;
    expect(st).toMatchObject({ id: podId, state: 'SANDBOX_READY', runtimeHandler: HANDLER });
    expect(st.network?.ip).toMatch(/^10\.200\.\d+\.\d+$/); // CNI ran in the pod's netns
    expect(netnsOfPods()).toHaveLength(1);
    expect(bridgePorts()).toHaveLength(1);
    expect(await n.call('state', { id: podId })).toMatchObject({ id: podId, kind: 'sandbox', status: 'running' });
    const [vm, ...more] = qemuOf(podId);
    expect(more).toEqual([]);
    const argv = readFileSync(`/proc/${vm}/cmdline`, 'utf8').split('\0');
    expect(argv[argv.indexOf('-smp') + 1]).toBe(String(VCPUS));
    expect(argv[argv.indexOf('-m') + 1]).toBe(String(MEMORY_MIB));
  });

  it('two containers start in the pod’s guest; their output reaches the pod’s log dir in CRI format', async () => {
    for (const [name, word, readonly] of [
      ['c1', 'one', false],
      ['c2', 'two', true],
    ] as const) {
      const config = containerConfig(name, IMAGE, `echo ${word}; sleep 600`, readonly);
      const { containerId } = await cri.createContainer(
        { podSandboxId: podId, config, sandboxConfig: pod },
        { timeoutMs: 90_000 },
      );
      containers[name] = containerId;
      await cri.startContainer({ containerId }, { timeoutMs: 90_000 });
    }
    const listed = await cri.listContainers({ filter: { podSandboxId: podId } });
    expect(listed.containers.map((x) => [x.metadata.name, x.state]).sort()).toEqual([
      ['c1', 'CONTAINER_RUNNING'],
      ['c2', 'CONTAINER_RUNNING'],
    ]);
    // One guest: the agent holds both as containers of the pod's sandbox, and no QEMU is theirs.
    const { tasks } = await n.call<{ tasks: { id: string; kind: string; sandboxId: string; status: string }[] }>(
      'list',
      {},
    );
    expect(tasks.map((t) => ({ id: t.id, kind: t.kind, sandboxId: t.sandboxId, status: t.status }))).toEqual(
      expect.arrayContaining([
        { id: podId, kind: 'sandbox', sandboxId: podId, status: 'running' },
        { id: containers.c1, kind: 'container', sandboxId: podId, status: 'running' },
        { id: containers.c2, kind: 'container', sandboxId: podId, status: 'running' },
      ]),
    );
    expect(tasks).toHaveLength(3);
    expect(qemuOf(podId)).toHaveLength(1);
    expect([...qemuOf(containers.c1!), ...qemuOf(containers.c2!)]).toEqual([]);
    for (const [name, word] of [
      ['c1', 'one'],
      ['c2', 'two'],
    ] as const) {
      const st = (await cri.containerStatus({ containerId: containers[name]! })).status;
      expect(st.logPath).toBe(join(pod.logDirectory!, `${name}.log`));
      const log = await waitFor(() => (existsSync(st.logPath) ? readFileSync(st.logPath, 'utf8') : ''), {
        until: (t) => t.length > 0,
        timeoutMs: 10_000,
        what: `${name}'s log`,
      });
      // CRI's log line: RFC 3339 nano timestamp, stream, F(ull) or P(artial) tag, the line.
      expect(log).toMatch(
        new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?(Z|[+-]\\d\\d:\\d\\d) stdout F ${word}\\n$`),
      );
    }
  });

  it('ExecSync in each container returns its stdout, stderr and exit code; the guest has the pod’s size', async () => {
    for (const name of ['c1', 'c2'] as const) {
      const r = await cri.execSync({
        containerId: containers[name]!,
        cmd: ['sh', '-c', 'echo $WHO $((6*7)); echo oops >&2; exit 3'],
        timeout: 30,
      });
      expect({ stdout: r.stdout.toString(), stderr: r.stderr.toString(), exitCode: r.exitCode }).toEqual({
        stdout: `${name} 42\n`,
        stderr: 'oops\n',
        exitCode: 3,
      });
    }
    // c2's root is read-only (c1's is not), yet CRI's binds onto it (/etc/hostname, /etc/hosts: targets the
    // image lacks) are in place, as in the sandbox (pause) container, whose root CRI always makes read-only.
    const probe = (name: 'c1' | 'c2') =>
      cri.execSync({
        containerId: containers[name]!,
        cmd: ['sh', '-c', 'touch /probe 2>&1 && echo written; cat /etc/hostname'],
        timeout: 30,
      });
    expect((await probe('c1')).stdout.toString()).toBe('written\np1\n');
    expect((await probe('c2')).stdout.toString()).toMatch(/^touch: \/probe: Read-only file system\np1\n$/);
    const size = await cri.execSync({
      containerId: containers.c1!,
      cmd: ['sh', '-c', "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo"],
      timeout: 30,
    });
    const [cpus, memKiB] = size.stdout.toString().trim().split('\n').map(Number);
    expect(cpus).toBe(VCPUS);
    expect(memKiB! / 1024).toBeGreaterThan(MEMORY_MIB / 2); // the kernel keeps some for itself
    expect(memKiB! / 1024).toBeLessThanOrEqual(MEMORY_MIB);
  });

  it('ExecSync past its timeout fails with DeadlineExceeded; the exec is killed, the container runs on', async () => {
    const t0 = Date.now();
    const e = await cri
      .execSync({ containerId: containers.c2!, cmd: ['sleep', '60'], timeout: 1 }, { timeoutMs: 30_000 })
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(grpcCode(e)).toBe(status.DEADLINE_EXCEEDED);
    expect(String((e as Error).message)).toMatch(/timeout 1s exceeded/);
    expect(Date.now() - t0).toBeLessThan(20_000);
    // CRI answers once the killed exec has exited: no `sleep 60` is left in the guest (no pid namespace per
    // container there, so c2's ps sees every process of the pod).
    const r = await cri.execSync({
      containerId: containers.c2!,
      cmd: ['sh', '-c', 'echo still; ps -o args | grep -c "^sleep 60$"'],
      timeout: 30,
    });
    expect(r.stdout.toString()).toBe('still\n0\n');
    expect((await cri.containerStatus({ containerId: containers.c2! })).status.state).toBe('CONTAINER_RUNNING');
  });

  it('ContainerStats reports the container’s CPU and memory from its cgroup in the guest', async () => {
    const { stats } = await cri.containerStats({ containerId: containers.c1! });
    expect(stats.attributes).toMatchObject({ id: containers.c1, metadata: { name: 'c1' } });
    expect(Number(stats.cpu?.usageCoreNanoSeconds?.value)).toBeGreaterThan(0);
    expect(Number(stats.memory?.usageBytes?.value)).toBeGreaterThan(0);
    expect(Number(stats.memory?.workingSetBytes?.value)).toBeGreaterThan(0);
  });

  it('CreateContainer of an image that does not exist fails with NotFound and creates nothing', async () => {
    const before = await n.call<{ tasks: unknown[] }>('list', {});
    const e = await cri
      .createContainer({
        podSandboxId: podId,
        config: containerConfig('nope', 'docker.io/library/no-such-image:latest', 'true'),
        sandboxConfig: pod,
      })
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(grpcCode(e)).toBe(status.NOT_FOUND);
    expect(String((e as Error).message)).toMatch(/no-such-image/);
    expect((await cri.listContainers({ filter: { podSandboxId: podId } })).containers).toHaveLength(2);
    expect((await n.call<{ tasks: unknown[] }>('list', {})).tasks).toHaveLength(before.tasks.length);
  });

  it('StopPodSandbox, RemovePodSandbox: no task, shim, mount, QEMU, VMM user or network namespace left', async () => {
    await cri.stopPodSandbox({ podSandboxId: podId }, { timeoutMs: 60_000 });
    expect((await cri.podSandboxStatus({ podSandboxId: podId })).status.state).toBe('SANDBOX_NOTREADY');
    const stopped = await cri.listContainers({ filter: { podSandboxId: podId } });
    expect(stopped.containers.map((x) => x.state)).toEqual(['CONTAINER_EXITED', 'CONTAINER_EXITED']);
    await cri.removePodSandbox({ podSandboxId: podId }, { timeoutMs: 60_000 });
    const gone = podId;
    podId = '';
    expect((await cri.listPodSandbox({})).items).toEqual([]);
    expect((await cri.listContainers({})).containers).toEqual([]);
    await waitFor(() => c.leftovers(), {
      until: (l) => l.shims.length === 0 && l.mounts.length === 0,
      timeoutMs: 30_000,
      what: 'no shim and no mount left by containerd',
    }).catch(() => undefined);
    expect(c.leftovers()).toEqual({ shims: [], mounts: [] });
    expect((await n.call<{ tasks: unknown[] }>('list', {})).tasks).toEqual([]);
    await n.expectNothingLeft([gone, ...Object.values(containers)]);
    expect(netnsOfPods()).toEqual([]);
    expect(netnsOnHost()).toEqual(netnsBefore);
    expect(bridgePorts()).toEqual([]);
  });

  it('containerd stops clean: no shim, no mount, and the CNI bridge is gone', async () => {
    const bridge = c.bridge!;
    expect(existsSync(`/sys/class/net/${bridge}`)).toBe(true); // CNI made it for the pod; DEL keeps it
    await c.stop();
    expect(existsSync(`/sys/class/net/${bridge}`)).toBe(false);
    expect(existsSync(c.dir)).toBe(false);
    expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })).not.toContain(bridge);
    expect(netnsOnHost()).toEqual(netnsBefore);
  });
});

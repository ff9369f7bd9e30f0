/**
 * A whole Corral node for end-to-end tests: a real nats-server on a free port, the agent process with
 * both workers (real mounts, real QEMU guests), data and run dirs in a fresh temp dir, and helpers to
 * make bundles, call the Task API, arm worker faults, run the CLI, and list what was left behind.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { expect } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../src/bus/connection.ts';
import { request } from '../../src/bus/rpc.ts';
import { taskRequest } from '../../src/bus/task-client.ts';
import { subjects, type TaskVerb } from '../../src/bus/subjects.ts';
import type { WorkerKind } from '../../src/domain/ops.ts';
import { startNatsServer, type LocalNats } from '../../src/bus/server.ts';
import { reconnected } from './nats.ts';
import { waitFor } from './wait.ts';
import { bringUp } from '../../src/cli/commands/up.ts';
import type { Io } from '../../src/cli/main.ts';
import { mountsUnder, processesMatching, runUserDirs, usersOfNode, virtiofsdUnder } from './leaks.ts';
import { bundleNetns, netLeftovers } from './net-leaks.ts';

export const REPO = resolve(new URL('../..', import.meta.url).pathname);
const CLI = join(REPO, 'src/cli/main.ts');

/** A free TCP port on 127.0.0.1 (taken and released: a test server binds it next). */
export const freePort = () =>
  new Promise<number>((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as { port: number };
      s.close(() => res(a.port));
    });
  });

const quiet: Io = { env: process.env, out: () => {}, err: () => {}, stdout: () => {}, stderr: () => {} };

export interface BundleOptions {
  args: string[];
  env?: string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  annotations?: Record<string, string>;
  /** Leave rootfs/ empty (for --rootfs mounts onto it). */
  emptyRootfs?: boolean;
  resources?: Record<string, unknown>;
  /** config.json `mounts` (OCI shape: destination, type, source, options). */
  mounts?: { destination: string; type: string; source: string; options?: string[] }[];
  hostname?: string;
  /** config.json `linux.namespaces` gets `{type: "network", path: netns}` (what containerd's CRI plugin writes). */
  netns?: string;
}

/**
 * `simulate`: the hypervisor worker runs simulated VMs (no QEMU), for scale tests and benchmarks;
 * `env`: more for the agent; `bundleRoots`: more dirs bundles may be in (containerd's state dir).
 */
export async function testNode(
  opts: { faults?: boolean; simulate?: boolean; env?: NodeJS.ProcessEnv; bundleRoots?: string[] } = {},
) {
  const dataDir = mkdtempSync('/tmp/corral-e2e-');
  chmodSync(dataDir, 0o755); // a rootless VMM user must traverse it to reach its sandbox's share
  const bundles = join(dataDir, 'bundles');
  mkdirSync(bundles);
  const configs = join(dataDir, 'configs');
  mkdirSync(configs);
  const node = `e2e${process.pid}`;
  const metrics = `127.0.0.1:${await freePort()}`;
  const n = await bringUp({
    dataDir,
    node,
    port: 0,
    io: quiet,
    guestDir: join(REPO, '.corral/guest'),
    bundleRoots: [bundles, ...(opts.bundleRoots ?? [])],
    extraEnv: {
      CORRAL_TEST_FAULTS: opts.faults ? '1' : '0',
      CORRAL_SIMULATE_VMS: opts.simulate ? '1' : '0',
      CORRAL_METRICS_ADDR: metrics,
      CORRAL_LOG_LEVEL: process.env.CORRAL_LOG_LEVEL ?? 'error',
      CORRAL_CONFIG_ROOTS: configs,
      ...opts.env,
    },
  }).catch((e: unknown) => {
    rmSync(dataDir, { recursive: true, force: true }); // bringUp stopped what it started; the dir is ours
    throw e;
  });
  const nc: NatsConnection = await connectNats(n.natsUrl, 'e2e');
  const env = { ...process.env, NATS_URL: n.natsUrl, CORRAL_NODE: node };
  /** nats-servers started by restartNats (the first one is bringUp's, stopped by n.stop()). */
  const restartedNats: LocalNats[] = [];
  const natsDir = join(dataDir, 'nats');
  const natsPid = () => Number(readFileSync(join(natsDir, 'nats-server.pid'), 'utf8'));
  const running = (pid: number) => {
    try {
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  };

  return {
    ...n,
    nc,
    dataDir,
    bundles,
    configs,
    metricsUrl: `http://${metrics}/metrics`,
    env,
    call: <T = Record<string, unknown>>(verb: TaskVerb, body: Record<string, unknown>, timeoutMs = 200_000) =>
      taskRequest<T>(nc, node, verb, body, timeoutMs),
    fault: (kind: WorkerKind, op: string, mode: 'fail' | 'hang' | 'crash' | 'crashAfter', times = 1) =>
      request(nc, subjects.worker(node, kind, '__fault'), { op, mode, times }, 5000),
    bundle(name: string, b: BundleOptions): string {
      const dir = join(bundles, name);
      mkdirSync(join(dir, 'rootfs'), { recursive: true });
      if (!b.emptyRootfs)
        cpSync(join(REPO, 'examples/hello/rootfs'), join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
      writeFileSync(
        join(dir, 'config.json'),
        JSON.stringify({
          ociVersion: '1.0.2',
          process: {
            user: { uid: b.uid ?? 0, gid: b.gid ?? 0 },
            args: b.args,
            env: b.env ?? ['PATH=/bin'],
            cwd: b.cwd ?? '/',
          },
          root: { path: 'rootfs', readonly: false },
          annotations: b.annotations ?? {},
          linux: {
            resources: b.resources ?? {},
            ...(b.netns ? { namespaces: [{ type: 'network', path: b.netns }] } : {}),
          },
          ...(b.mounts ? { mounts: b.mounts } : {}),
          ...(b.hostname ? { hostname: b.hostname } : {}),
        }),
      );
      return dir;
    },
    /** Run the CLI as a user would; resolves with its exit code and output. */
    cli(
      args: string[],
      extraEnv: NodeJS.ProcessEnv = {},
      input?: Uint8Array | string,
    ): Promise<{ code: number; stdout: string; stderr: string }> {
      return new Promise((res) => {
        const p = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
          cwd: REPO,
          env: { ...env, ...extraEnv },
        });
        if (input === undefined) p.stdin.end();
        else p.stdin.end(input);
        let stdout = '',
          stderr = '';
        p.stdout.on('data', (d) => (stdout += d));
        p.stderr.on('data', (d) => (stderr += d));
        p.on('exit', (code) => res({ code: code ?? 1, stdout, stderr }));
      });
    },
    /** Everything a sandbox could leave behind on this host. */
    leftovers(ids: string[] = []) {
      const sandboxes = join(dataDir, 'run/sandboxes');
      return {
        mounts: mountsUnder(dataDir),
        qemu: ids.flatMap((id) => processesMatching(`-name corral-${id} `)),
        virtiofsd: virtiofsdUnder(dataDir), // any of this node's: their shares are under its data dir
        users: usersOfNode(node),
        runUser: runUserDirs().filter(
          (d) => /^\d+$/.test(d) && Number(d) >= 1000 && !existsSync(`/proc/${d}`) && ownerless(d),
        ),
        sandboxDirs: existsSync(sandboxes) ? readdirSync(sandboxes) : [],
        net: netLeftovers(node, bundleNetns(bundles)), // taps, qdiscs and namespaces Corral made
      };
    },
    /** The running nats-server's pid (it writes its pid file: src/bus/server.ts). */
    natsPid,
    /**
     * SIGKILL the node's nats-server (a crash: no shutdown) and start it again on the same port and
     * store dir. The agent, its workers and `nc` reconnect by themselves (connection.ts); resolves once
     * `nc` is back. `downMs` keeps the server down that long; `whileDown` runs once it is down.
     */
    async restartNats(
      opts: { downMs?: number; whileDown?: () => void } = {},
    ): Promise<{ pid: number; downMs: number }> {
      const port = Number(new URL(n.natsUrl).port);
      const pid = natsPid();
      const back = reconnected(nc, 15_000 + (opts.downMs ?? 0));
      back.catch(() => {}); // awaited below, after the restart
      const t0 = performance.now();
      process.kill(pid, 'SIGKILL');
      await waitFor(() => !running(pid), { timeoutMs: 5000, intervalMs: 10, what: `nats-server ${pid} to die` });
      opts.whileDown?.();
      if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs)); // the outage's length
      const srv = await startNatsServer({ dataDir: natsDir, port, log: () => {} });
      restartedNats.push(srv);
      const downMs = Math.round(performance.now() - t0);
      await back;
      return { pid: srv.proc.pid!, downMs };
    },
    /**
     * Removes tasks as a user would (SIGKILL, wait, delete), ignoring ones already gone: what a test that
     * failed half way leaves, so the next starts clean and the leak check judges only the cleanup code.
     */
    async removeTasks(ids: string[]) {
      for (const id of ids) {
        await this.call('kill', { id, signal: 'SIGKILL' }).catch(() => undefined);
        await this.call('wait', { id }).catch(() => undefined);
        await this.call('delete', { id }).catch(() => undefined);
      }
    },
    /** Waits until this node left nothing of `ids` behind (cleanup runs after some replies), then asserts it. */
    async expectNothingLeft(ids: string[] = [], ms = 30_000) {
      const left = await waitFor(() => this.leftovers(ids), {
        until: (l) => JSON.stringify(l) === JSON.stringify(NOTHING_LEFT),
        timeoutMs: ms,
        intervalMs: 100,
        what: `nothing left of ${ids.join(', ') || 'this node'} on the host`,
      }).catch(() => this.leftovers(ids)); // the assertion below shows what is left, as a diff
      expect(left).toEqual(NOTHING_LEFT);
    },
    async cleanup() {
      await nc.close().catch(() => {});
      await n.stop();
      for (const s of restartedNats) await s.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
export type TestNode = Awaited<ReturnType<typeof testNode>>;

/** A /run/user/<uid> whose uid has no passwd entry: left behind by a removed VMM user. */
function ownerless(uid: string): boolean {
  try {
    execFileSync('getent', ['passwd', uid]);
    return false;
  } catch {
    return true;
  }
}

/** The mounts containerd's default spec gives a container (oci.WithDefaultSpec on Linux). */
export const DEFAULT_MOUNTS = [
  { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
  {
    destination: '/dev',
    type: 'tmpfs',
    source: 'tmpfs',
    options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
  },
  {
    destination: '/dev/pts',
    type: 'devpts',
    source: 'devpts',
    options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
  },
  { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777'] },
  { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
];

export const NOTHING_LEFT = {
  mounts: [],
  qemu: [],
  virtiofsd: [],
  users: [],
  runUser: [],
  sandboxDirs: [],
  net: [] as string[],
};

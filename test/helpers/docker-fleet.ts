/**
 * A Corral fleet in containers on a test-owned Docker engine (docker-engine.ts): a 3-server NATS cluster
 * (JetStream clustered, the config of src/bus/cluster-config.ts) and Corral nodes (agent + workers with
 * simulated VMs: no QEMU), each a container on one `Internal` network (no route out of it). The image is
 * built here from a rootfs of symlinks (bin, lib, lib64, sbin into /usr) and three /etc files; /usr, the
 * repository and the test's dir are bind-mounted (read-only but for the test's dir), so every container
 * runs this machine's node, nats-server and mount. Nodes get CAP_SYS_ADMIN for their mounts
 * (`--privileged` cannot start here: the machine's bounding set lacks CAP_SYS_RESOURCE).
 *
 * Faults: `cut` puts iptables rules in the member's own network namespace (nsenter; they go with it),
 * `pause`/`unpause` (docker pause), `kill` (SIGKILL of the whole container: an agent and its workers, or a
 * server) and `start`. Nothing here touches the host's iptables.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { GenericContainer, getContainerRuntimeClient, Wait, type StartedTestContainer } from 'testcontainers';
import { natsClusterConfigs } from '../../src/bus/cluster-config.ts';
import { chooseNatsServer } from '../../src/bus/nats-binary.ts';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { containerPid, dockerCli, type DockerEngine } from './docker-engine.ts';
import { REPO } from './node.ts';

export interface Member {
  name: string;
  kind: 'server' | 'node';
  c: StartedTestContainer;
  /** What its process printed, kept for a failing check to quote (the last 4 MB). */
  output: string[];
}

export interface DockerFleet {
  servers: Member[];
  nodes: Member[];
  network: string;
  /** Every server's client URL by address, for connections from this (the host) side. */
  url(): string;
  /** The member's address now (a restarted container may get another). */
  ip(m: Member): string;
  /** Drop (`reject`: refuse with a TCP reset) everything between `m` and each of `peers` (and the host's side). */
  cut(m: Member, peers: Member[], how: 'drop' | 'reject', host?: boolean): void;
  heal(m: Member): void;
  pause(m: Member): void;
  unpause(m: Member): void;
  kill(m: Member): void;
  start(m: Member): void;
  /** Stop every container (nodes first, SIGTERM: the agents tear down), then remove the network. */
  stop(): Promise<void>;
}

const IMAGE = 'corral-host:test';

async function keepOutput(m: Member): Promise<Member> {
  let size = 0;
  (await m.c.logs()).on('data', (b: Buffer | string) => {
    const line = b.toString();
    m.output.push(line);
    for (size += line.length; size > 4 << 20;) size -= m.output.shift()!.length;
  });
  return m;
}

async function buildImage(dir: string): Promise<void> {
  const root = join(dir, 'image', 'rootfs');
  for (const d of ['etc', 'tmp', 'proc', 'dev', 'sys', 'run', 'usr']) mkdirSync(join(root, d), { recursive: true });
  for (const [l, t] of [
    ['bin', 'usr/bin'],
    ['lib', 'usr/lib'],
    ['lib64', 'usr/lib64'],
    ['sbin', 'usr/sbin'],
  ])
    symlinkSync(t!, join(root, l!));
  for (const f of ['passwd', 'group', 'nsswitch.conf']) copyFileSync(join('/etc', f), join(root, 'etc', f));
  writeFileSync(join(dir, 'image', 'Dockerfile'), 'FROM scratch\nCOPY rootfs/ /\n');
  await GenericContainer.fromDockerfile(join(dir, 'image')).build(IMAGE, { deleteOnExit: false });
}

export async function startDockerFleet(
  engine: DockerEngine,
  o: { dir: string; nodes: string[]; capacity: string; agentArgs?: string[] },
): Promise<DockerFleet> {
  await buildImage(o.dir);
  const client = await getContainerRuntimeClient();
  const network = `corral-part-${process.pid}`;
  const net = await client.container.dockerode.createNetwork({ Name: network, Driver: 'bridge', Internal: true });
  const base = () =>
    new GenericContainer(IMAGE)
      .withNetworkMode(network)
      .withBindMounts([
        { source: '/usr', target: '/usr', mode: 'ro' },
        { source: REPO, target: REPO, mode: 'ro' },
        { source: o.dir, target: o.dir, mode: 'rw' },
      ])
      .withTmpFs({ '/tmp': 'rw' });
  const nats = chooseNatsServer();
  const names = ['pn-1', 'pn-2', 'pn-3'];
  const cfg = natsClusterConfigs({
    version: nats.version,
    dataDir: join(o.dir, 'nats'),
    basePort: 4222,
    hosts: names,
    namePrefix: 'pn',
  });
  mkdirSync(join(o.dir, 'nats'), { recursive: true });
  // One at a time: started together, two servers' routes to each other could both close as duplicates
  // and one server never heard of the meta leader ("no suitable peers for placement" for good; seen twice).
  const servers: Member[] = [];
  for (const s of cfg.servers) {
    const conf = join(o.dir, 'nats', `${s.name}.conf`);
    writeFileSync(conf, s.text);
    const c = await base()
      .withName(s.name)
      .withEntrypoint([nats.binary === 'nats-server' ? '/usr/sbin/nats-server' : nats.binary])
      .withCommand(['-c', conf])
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    servers.push(await keepOutput({ name: s.name, kind: 'server', c, output: [] }));
  }
  const conf = join(o.dir, 'configuration.toml');
  writeFileSync(conf, localRuntimeConfig(join(REPO, '.corral/guest')));
  const natsUrl = cfg.url;
  const nodes = await Promise.all(
    o.nodes.map(async (node): Promise<Member> => {
      const d = join(o.dir, node);
      mkdirSync(join(d, 'bundles'), { recursive: true });
      const c = await base()
        .withName(`node-${node}`)
        .withAddedCapabilities('SYS_ADMIN')
        .withEnvironment({ CORRAL_SIMULATE_VMS: '1', CORRAL_CONF_FILE: conf, CORRAL_LOG_LEVEL: 'warn', HOME: '/tmp' })
        .withWorkingDir(REPO)
        .withEntrypoint([process.execPath])
        .withCommand([
          ...['--import', 'tsx', join(REPO, 'src/cli/main.ts'), 'agent', '--spawn-workers', '--teardown-on-exit'],
          ...['--node', node, '--nats', natsUrl, '--data-dir', d, '--run-dir', join(d, 'run')],
          ...['--bundle-root', join(d, 'bundles'), '--replicas', '3', '--capacity', o.capacity],
          ...(o.agentArgs ?? []),
        ])
        .start();
      return keepOutput({ name: node, kind: 'node', c, output: [] });
    }),
  );
  const engineCli = (args: string[]) => dockerCli(engine.socket, args);
  const ip = (m: Member) =>
    engineCli(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', m.c.getId()]).trim();
  const gateway = engineCli(['network', 'inspect', '-f', '{{range .IPAM.Config}}{{.Gateway}}{{end}}', network]).trim();
  const iptables = (m: Member, args: string[]) => {
    const pid = containerPid(engine.socket, m.c.getId());
    const r = spawnSync('nsenter', ['-t', String(pid), '-n', 'iptables', '-w', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`iptables ${args.join(' ')} in ${m.name}: ${r.stderr}`);
  };
  return {
    servers,
    nodes,
    network,
    ip,
    url: () => servers.map((s) => `nats://${ip(s)}:4222`).join(','),
    cut(m, peers, how, host = false) {
      const addrs = [...peers.map(ip), ...(host ? [gateway] : [])];
      const target = how === 'drop' ? ['-j', 'DROP'] : ['-p', 'tcp', '-j', 'REJECT', '--reject-with', 'tcp-reset'];
      for (const a of addrs) {
        iptables(m, ['-A', 'INPUT', '-s', a, ...target]);
        iptables(m, ['-A', 'OUTPUT', '-d', a, ...target]);
      }
    },
    heal(m) {
      iptables(m, ['-F', 'INPUT']);
      iptables(m, ['-F', 'OUTPUT']);
    },
    pause: (m) => void engineCli(['pause', m.c.getId()]),
    unpause: (m) => void engineCli(['unpause', m.c.getId()]),
    kill: (m) => void engineCli(['kill', '-s', 'KILL', m.c.getId()]),
    start: (m) => void engineCli(['start', m.c.getId()]),
    async stop() {
      for (const group of [nodes, servers])
        await Promise.all(
          group.map((m) => {
            const state = engineCli(['inspect', '-f', '{{.State.Status}}', m.c.getId()]).trim();
            if (state === 'paused') engineCli(['unpause', m.c.getId()]);
            return m.c.stop({ timeout: 30_000 });
          }),
        );
      await net.remove();
    },
  };
}

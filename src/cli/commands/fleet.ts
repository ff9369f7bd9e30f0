/**
 * `corral fleet`: the node registry seen and changed by an operator (nodes, cordon, uncordon, drain)
 * and the placement service (controller). src/fleet/ holds the logic; this is flags and output.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../bus/connection.ts';
import { taskRequest } from '../../bus/task-client.ts';
import { subjects } from '../../bus/subjects.ts';
import { err } from '../../errors.ts';
import { loadSettings } from '../../agent/settings.ts';
import { rootLogger } from '../../log.ts';
import { FleetController } from '../../fleet/controller.ts';
import { drainNode } from '../../fleet/drain.ts';
import { fleetRecreator } from '../../fleet/recreate.ts';
import { DEFAULT_LOST_AFTER_MS } from '../../fleet/liveness.ts';
import { POLICIES, type Policy } from '../../fleet/placement.ts';
import { NodeRegistry } from '../../fleet/registry.ts';
import type { Versioned } from '../../fleet/types.ts';
import { duration, need, parse, type Parsed } from '../args.ts';
import type { Io } from '../io.ts';

export const FLEET_USAGE = `corral fleet nodes [--json]
corral fleet cordon NODE | corral fleet uncordon NODE
corral fleet drain NODE [--timeout D] [--grace D] [--policy delete|recreate]
corral fleet controller [--policy spread|binpack] [--lost-after D] [--name NAME] [--node-timeout D] [--replicas N]

  nodes       every node: state, capacity and use (vCPUs, MiB, sandboxes), last heartbeat, version
  cordon      stop placing new sandboxes on NODE (uncordon: resume)
  drain       cordon, then stop and delete NODE's sandboxes, with progress; --timeout bounds the whole
              drain (5m), --grace is SIGTERM to SIGKILL per task (10s); --policy recreate: then create
              them again through the fleet on other nodes (started if they ran; fleet-created ones only)
  controller  the placement service on corral.v1.fleet.task.create, queue group corral-fleet (run as
              many as you like); --lost-after: heartbeat bound (3s); --node-timeout: a node's create (5m);
              --replicas: of the registry bucket when this controller creates it (env CORRAL_REPLICAS; 3 on a
              3-server cluster)

  Every fleet command takes --creds FILE (env CORRAL_CREDS): the NKEY seed to connect with (an
  operator's for nodes/cordon/drain, the controller's for controller; infra/nats/gen-creds.ts).`;

async function connect(p: Parsed, io: Io, name: string): Promise<{ nc: NatsConnection; registry: NodeRegistry }> {
  const s = loadSettings(
    {
      nats: p.values.nats as string | undefined,
      creds: p.values.creds as string | undefined,
      replicas: p.values.replicas as string | undefined,
    },
    io.env,
  );
  const nc = await connectNats(s.natsUrl, name, { nkeySeedFile: s.credsFile });
  try {
    return { nc, registry: await NodeRegistry.open(nc, { replicas: s.replicas }) };
  } catch (e) {
    await nc.close().catch(() => {
      // The error that matters is `e`, rethrown below; closing is only tidying up.
    });
    throw e;
  }
}

async function withRegistry<T>(p: Parsed, io: Io, f: (nc: NatsConnection, r: NodeRegistry) => Promise<T>): Promise<T> {
  const { nc, registry } = await connect(p, io, 'corral-cli');
  try {
    return await f(nc, registry);
  } finally {
    await nc.drain().catch(() => {
      // The command's outcome is already decided (returned or thrown); nothing is left to flush.
    });
  }
}

/** `0.4s`, `12s`, `3m`, `2h`, `5d`. */
export function age(ms: number): string {
  if (ms < 0) return '0s';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)}h`;
  return `${Math.round(ms / 86_400_000)}d`;
}

/** The `fleet nodes` table: one line per node, simulated ones marked. */
export function nodesTable(nodes: readonly Versioned[], now: number): string {
  const rows = [['NODE', 'STATE', 'VCPUS', 'MEMORY MiB', 'SANDBOXES', 'HEARTBEAT', 'VERSION', 'LABELS']];
  for (const { entry: e } of nodes) {
    rows.push([
      e.simulated ? `${e.node} (simulated)` : e.node,
      e.state,
      `${e.used.vcpus}/${e.capacity.vcpus}`,
      `${e.used.memoryMiB}/${e.capacity.memoryMiB}`,
      `${e.used.sandboxes}/${e.capacity.sandboxes}`,
      `${age(now - e.heartbeatAt)} ago`,
      e.version || '-',
      Object.entries(e.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',') || '-',
    ]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd(),
  );
  const sim = nodes.filter((n) => n.entry.simulated).length;
  if (sim) lines.push(`(${sim} of ${nodes.length} nodes are simulated: their hypervisor is simulated, no VM runs)`);
  return lines.join('\n');
}

const view = (v: Versioned, now: number) => ({
  ...v.entry,
  revision: v.revision,
  heartbeatAgeMs: now - v.entry.heartbeatAt,
});

async function nodes(argv: string[], io: Io): Promise<number> {
  const p = parse(argv);
  const list = await withRegistry(p, io, (_nc, r) => r.list());
  const now = Date.now();
  io.out(
    p.values.json
      ? JSON.stringify(list.map((v) => view(v, now)))
      : list.length
        ? nodesTable(list, now)
        : 'no nodes registered',
  );
  return 0;
}

async function setState(argv: string[], io: Io, action: 'cordon' | 'uncordon'): Promise<number> {
  const p = parse(argv);
  const node = need(p, 0, 'NODE');
  const r = await withRegistry(p, io, (_nc, reg) => reg.setState(node, action));
  const e = r.current!.entry;
  const now = e.state === 'lost' ? `lost (it will be ${e.lostFrom} when its heartbeats resume)` : e.state;
  io.out(p.values.json ? JSON.stringify(view(r.current!, Date.now())) : `${node}: ${r.wrote ? '' : 'already '}${now}`);
  return 0;
}

async function drain(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, { grace: { type: 'string' }, policy: { type: 'string' } });
  const node = need(p, 0, 'NODE');
  const policy = (p.values.policy as string | undefined) ?? 'delete';
  if (policy !== 'delete' && policy !== 'recreate')
    throw err.invalid(`--policy must be delete or recreate, got ${JSON.stringify(policy)}`);
  const r = await withRegistry(p, io, (nc, reg) =>
    drainNode(
      reg,
      node,
      (verb, body, timeoutMs) => taskRequest(nc, node, verb, body, timeoutMs),
      {
        timeoutMs: duration(p, 'timeout', 300_000),
        graceMs: duration(p, 'grace', 10_000),
        policy,
        ...(policy === 'recreate' ? { recreator: fleetRecreator(nc, node) } : {}),
      },
      (line) => {
        if (!p.values.json) io.out(line);
      },
    ),
  );
  if (p.values.json) io.out(JSON.stringify(r));
  return r.failed.length ? 1 : 0;
}

async function controller(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, {
    policy: { type: 'string' },
    'lost-after': { type: 'string' },
    name: { type: 'string' },
    'node-timeout': { type: 'string' },
    'log-level': { type: 'string' },
    replicas: { type: 'string' },
  });
  const policy = (p.values.policy as string | undefined) ?? 'spread';
  if (!POLICIES.includes(policy as Policy))
    throw err.invalid(`--policy must be one of ${POLICIES.join(', ')}, got ${JSON.stringify(policy)}`);
  const log = rootLogger({ name: 'corral-fleet', level: p.values['log-level'] as string | undefined });
  const { nc, registry } = await connect(p, io, 'corral-fleet-controller');
  const boundMs = duration(p, 'lost-after', DEFAULT_LOST_AFTER_MS);
  const c = await FleetController.start({
    nc,
    registry,
    policy: policy as Policy,
    name: p.values.name as string | undefined,
    nodeTimeoutMs: duration(p, 'node-timeout', 300_000),
    liveness: { boundMs },
    log,
  });
  io.err(
    `corral fleet controller ${c.name} ready: ${subjects.fleetCreate()} (queue corral-fleet), policy ${policy}, ` +
      `nodes lost after ${boundMs} ms without a heartbeat, ${c.view.size} node(s) registered`,
  );
  return new Promise<number>((resolve) => {
    const stop = (why: string) => {
      log.info({ why, ...c.stats }, 'controller stopping');
      void c
        .stop()
        .then(() => nc.drain().catch((e: unknown) => log.warn({ err: e }, 'NATS connection did not drain')))
        .then(() => resolve(0));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

export async function fleetCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'nodes':
      return nodes(rest, io);
    case 'cordon':
      return setState(rest, io, 'cordon');
    case 'uncordon':
      return setState(rest, io, 'uncordon');
    case 'drain':
      return drain(rest, io);
    case 'controller':
      return controller(rest, io);
    default:
      throw err.invalid(
        `fleet ${sub === undefined ? 'needs a subcommand' : `has no subcommand ${JSON.stringify(sub)}`}: ` +
          'nodes, cordon, uncordon, drain, controller',
      );
  }
}

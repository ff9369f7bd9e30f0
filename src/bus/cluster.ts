/**
 * A NATS cluster for Corral: N nats-servers joined by routes, JetStream clustered (one store dir per
 * server, a unique `server_name` each), so that CORRAL_EVENTS and the KV buckets can have 3 replicas
 * and survive the loss of one server (docs/decisions/0007-cluster-security.md).
 *
 * {@link natsClusterConfigs} is pure (test/unit/cluster.test.ts): the config text of every server, for
 * one machine (distinct ports, what `corral up --cluster 3` and the tests run) or for one server per
 * machine (`hosts`, what infra/nats/cluster/ ships). {@link startNatsCluster} runs them as child
 * processes and resolves once JetStream has a meta leader (`$JS.API.INFO` answers without an error).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { nodeName } from './node-name.ts';
import { supportsSyncInterval, type ServerVersion } from './nats-config.ts';
import { natsServerBinary, natsServerVersion } from './server.ts';

export interface ClusterConfigInput {
  /** Parsed `nats-server --version` (decides `sync_interval: always`, as for one server). */
  version: ServerVersion | undefined;
  /** Server i keeps JetStream in `<dataDir>/<name>` (its own store dir). */
  dataDir: string;
  /** Client port: server i listens on basePort + i (on one machine) or basePort (with `hosts`). */
  basePort: number;
  /** @default 3 */
  size?: number;
  /** Route port: server i on routeBasePort + i (one machine) or routeBasePort (with `hosts`). @default basePort + size (one machine), 6222 (hosts) */
  routeBasePort?: number;
  /** One machine per server: server i listens on hosts[i] and routes to the others' hosts. */
  hosts?: string[];
  /** Listen address. @default 127.0.0.1 on one machine, 0.0.0.0 with `hosts` */
  host?: string;
  /** @default corral */
  clusterName?: string;
  /** Server names are `<namePrefix>-<i+1>`. @default corral */
  namePrefix?: string;
  /** @default 1MB */
  maxPayload?: string;
  maxFileStore?: string;
  /** Text appended to every server's config (e.g. the `authorization { ... }` block of infra/nats/gen-creds.ts). */
  extra?: string;
}

export interface ClusterServerConfig {
  index: number;
  name: string;
  host: string;
  port: number;
  routePort: number;
  storeDir: string;
  pidFile: string;
  /** `nats://host:port` */
  url: string;
  text: string;
}

export interface ClusterConfigs {
  servers: ClusterServerConfig[];
  /** Every client URL, comma-separated: what agents get as `--nats`. */
  url: string;
  syncAlways: boolean;
  guarantee: string;
}

const q = (s: string) => JSON.stringify(s);

export function natsClusterConfigs(c: ClusterConfigInput): ClusterConfigs {
  const size = c.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw err.invalid(`cluster size must be a positive integer, got ${size}`);
  if (c.hosts && c.hosts.length !== size)
    throw err.invalid(`cluster of ${size} needs ${size} hosts, got ${c.hosts.length}`);
  const multi = !!c.hosts;
  const routeBase = c.routeBasePort ?? (multi ? 6222 : c.basePort + size);
  const ports = (i: number) => ({
    host: multi ? c.hosts![i]! : (c.host ?? '127.0.0.1'),
    port: multi ? c.basePort : c.basePort + i,
    routePort: multi ? routeBase : routeBase + i,
  });
  const all = Array.from({ length: size }, (_, i) => ports(i));
  for (const p of all) {
    if (
      !Number.isInteger(p.port) ||
      p.port < 1 ||
      p.port > 65535 ||
      !Number.isInteger(p.routePort) ||
      p.routePort < 1 ||
      p.routePort > 65535
    ) {
      throw err.invalid(`cluster ports out of range: client ${p.port}, route ${p.routePort}`);
    }
  }
  if (!multi) {
    const used = all.flatMap((p) => [p.port, p.routePort]);
    if (new Set(used).size !== used.length) throw err.invalid(`cluster ports overlap: ${used.join(', ')}`);
  }
  const syncAlways = supportsSyncInterval(c.version);
  const v = c.version ? `nats-server ${c.version.text}` : 'this nats-server (version unknown)';
  const guarantee = syncAlways
    ? `${v}, ${size} servers: every JetStream write is fsynced (sync_interval: always) and, with 3 replicas, acknowledged once a majority stored it`
    : `${v}, ${size} servers: writes are flushed on the server's default interval; with 3 replicas an acknowledged write is on a majority of servers, so losing one server (even to an OS crash) loses nothing`;
  const prefix = c.namePrefix ?? 'corral';
  const routes = all.map((p) => `nats-route://${p.host}:${p.routePort}`);
  const listen = c.host ?? (multi ? '0.0.0.0' : '127.0.0.1');
  const servers = all.map((p, i): ClusterServerConfig => {
    const name = `${prefix}-${i + 1}`;
    const storeDir = join(c.dataDir, name);
    const pidFile = join(c.dataDir, `${name}.pid`);
    const lines = [
      `# Generated by Corral (src/bus/cluster.ts): server ${i + 1} of a ${size}-server cluster.`,
      `# ${guarantee}`,
      `server_name: ${q(name)}`,
      `host: ${q(listen)}`,
      `port: ${p.port}`,
      `max_payload: ${c.maxPayload ?? '1MB'}`,
      `pid_file: ${q(pidFile)}`,
      'jetstream {',
      `  store_dir: ${q(storeDir)}`,
      ...(c.maxFileStore ? [`  max_file_store: ${c.maxFileStore}`] : []),
      ...(syncAlways ? ['  sync_interval: always'] : []),
      '}',
      'cluster {',
      `  name: ${q(c.clusterName ?? 'corral')}`,
      `  host: ${q(listen)}`,
      `  port: ${p.routePort}`,
      '  # every server lists all of them (its own route is ignored); servers find each other in any start order',
      `  routes: [${routes.map(q).join(', ')}]`,
      '}',
      ...(c.extra ? ['', c.extra.trimEnd()] : []),
      '',
    ];
    return {
      index: i,
      name,
      host: p.host,
      port: p.port,
      routePort: p.routePort,
      storeDir,
      pidFile,
      url: `nats://${p.host}:${p.port}`,
      text: lines.join('\n'),
    };
  });
  return { servers, url: servers.map((s) => s.url).join(','), syncAlways, guarantee };
}

export interface ClusterMember {
  name: string;
  url: string;
  configFile: string;
  proc: ChildProcess;
}

export interface LocalNatsCluster {
  /** Every client URL, comma-separated (give it to connectNats / `--nats`). */
  url: string;
  urls: string[];
  members: ClusterMember[];
  guarantee: string;
  /** SIGKILL server i (a crash) and wait until it is gone. */
  kill(i: number): Promise<void>;
  /** Start server i again from its config and store dir (kills it first if it runs); waits until it serves. */
  restart(i: number): Promise<void>;
  /** Resolves once JetStream answers `$JS.API.INFO` without an error (a meta leader exists). */
  waitForJetStream(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const freePort = (port: number) =>
  new Promise<boolean>((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });

/** A base port with `2 * size` free ports after it (client and route ports on one machine). */
async function freeBase(size: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    let ok = true;
    for (let p = base; p < base + 2 * size && ok; p++) ok = await freePort(p);
    if (ok) return base;
  }
  throw err.unavailable(`no ${2 * size} consecutive free ports found for a NATS cluster`);
}

const gone = (p: ChildProcess) =>
  new Promise<void>((r) => {
    if (p.exitCode !== null || p.signalCode !== null) r();
    else p.once('exit', () => r());
  });

function spawnServer(configFile: string, timeoutMs: number): Promise<ChildProcess> {
  const proc = spawn(natsServerBinary(), ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise<ChildProcess>((resolveP, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(err.timeout(`nats-server (${configFile}) did not start: ${buf.slice(-500)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      proc.stderr!.removeAllListeners('data');
      proc.stderr!.resume();
    };
    proc.once('error', (e) => {
      done();
      reject(err.unavailable(`cannot run nats-server (${natsServerBinary()}): ${e.message}`, e));
    });
    proc.once('exit', (code) => {
      done();
      reject(err.unavailable(`nats-server (${configFile}) exited with ${code}: ${buf.slice(-500)}`));
    });
    proc.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (/Server is ready/.test(buf)) {
        done();
        resolveP(proc);
      }
    });
  });
}

export async function startNatsCluster(opts: {
  dataDir: string;
  /** @default 3 */
  size?: number;
  /** Client ports basePort..basePort+size-1, route ports after them; unset: a free range. */
  basePort?: number;
  timeoutMs?: number;
  /** Appended to every server's config (an `authorization` block). */
  extra?: string;
  /** With `extra` auth: the seed file of a user allowed `$JS.API.INFO`, for the readiness check. */
  readySeedFile?: string;
  log?: (line: string) => void;
}): Promise<LocalNatsCluster> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const size = opts.size ?? 3;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const version = await natsServerVersion();
  const basePort = opts.basePort ?? (await freeBase(size));
  const cfg = natsClusterConfigs({ version, dataDir, basePort, size, extra: opts.extra });
  const members: ClusterMember[] = [];
  const stopAll = () =>
    Promise.all(
      members.map(async (m) => {
        if (m.proc.exitCode !== null || m.proc.signalCode !== null) return;
        m.proc.kill('SIGTERM');
        const t = setTimeout(() => m.proc.kill('SIGKILL'), 5000);
        await gone(m.proc);
        clearTimeout(t);
      }),
    );
  try {
    const procs = await Promise.allSettled(
      cfg.servers.map(async (s) => {
        const configFile = join(dataDir, `${s.name}.conf`);
        writeFileSync(configFile, s.text);
        const proc = await spawnServer(configFile, timeoutMs);
        members[s.index] = { name: s.name, url: s.url, configFile, proc };
      }),
    );
    const failed = procs.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (e) {
    await stopAll();
    throw e;
  }

  const connectOpts = () => {
    const seed = opts.readySeedFile ? readFileSync(opts.readySeedFile, 'utf8').trim() : undefined;
    return seed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) } : {};
  };
  async function waitForJetStream(ms = timeoutMs): Promise<void> {
    const until = Date.now() + ms;
    let nc: NatsConnection | undefined;
    let last = '';
    try {
      nc = await connect({
        servers: cfg.servers.map((s) => s.url),
        timeout: 3000,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...connectOpts(),
      });
      for (;;) {
        try {
          const m = await nc.request('$JS.API.INFO', undefined, { timeout: 1000 });
          const r = JSON.parse(new TextDecoder().decode(m.data)) as { error?: { description?: string } };
          if (!r.error) return;
          last = r.error.description ?? JSON.stringify(r.error);
        } catch (e) {
          last = (e as Error).message;
        }
        if (Date.now() > until)
          throw err.timeout(`JetStream of the NATS cluster has no meta leader after ${ms} ms (${last})`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await nc?.close().catch(() => {});
    }
  }
  try {
    await waitForJetStream();
  } catch (e) {
    await stopAll();
    throw e;
  }
  (opts.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(cfg.guarantee);

  const cluster: LocalNatsCluster = {
    url: cfg.url,
    urls: cfg.servers.map((s) => s.url),
    members,
    guarantee: cfg.guarantee,
    async kill(i) {
      const m = members[i]!;
      if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
      await gone(m.proc);
    },
    async restart(i) {
      await cluster.kill(i);
      members[i]!.proc = await spawnServer(members[i]!.configFile, timeoutMs);
    },
    waitForJetStream,
    stop: async () => {
      await stopAll();
    },
  };
  return cluster;
}

// ---------------------------------------------------------------------------------------------------
// Security between nodes: one NKEY user per node, allowed only its own subjects (decision 0007).

export interface Permissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

export interface AuthUser {
  /** The user's public NKEY (`U...`). */
  nkey: string;
  /** `node:<name>`, `controller` or `admin`: written as a comment. */
  role: string;
  /** Undefined: everything (the admin). */
  permissions?: Permissions;
}

const BUCKETS = { nodes: 'CORRAL_NODES', snapshots: 'CORRAL_SNAPSHOTS' } as const;

/**
 * What a node's agent and its two workers may publish and subscribe to. Writes are confined to the
 * node's own subjects: its Task API and worker subjects (`corral.v1.node.<node>.>`), its event log
 * records (`corral.v1.evt.<node>.>`), its registry key and its snapshot keys. Reads of the streams go
 * through the JetStream API, which nats-server 2.9 cannot confine to one node's records (a consumer's
 * filter is in the request body): a node may read other nodes' records, not write them.
 */
export function nodePermissions(node: string): Permissions {
  nodeName(node);
  const ev = 'CORRAL_EVENTS';
  const kvNodes = `KV_${BUCKETS.nodes}`;
  const kvSnaps = `KV_${BUCKETS.snapshots}`;
  const durable = `corral-agent-${node}-worker-facts`;
  return {
    publish: {
      allow: [
        `corral.v1.node.${node}.>`, // its workers' ops, its process output
        `corral.v1.evt.${node}.>`, // its event log records (JetStream stores them)
        '_INBOX.>', // replies to whoever calls its Task API and worker ops
        `$KV.${BUCKETS.nodes}.${node}`, // its registry entry (heartbeat, reservations)
        `$KV.${BUCKETS.snapshots}.${node}.>`, // its actors' snapshots
        '$JS.API.INFO',
        '$JS.API.STREAM.INFO.*',
        '$JS.API.STREAM.NAMES',
        `$JS.API.STREAM.CREATE.${ev}`,
        `$JS.API.STREAM.UPDATE.${ev}`, // ensureEventStream
        `$JS.API.STREAM.PURGE.${ev}`, // retention of its deleted sandboxes' history
        `$JS.API.STREAM.CREATE.${kvNodes}`,
        `$JS.API.STREAM.CREATE.${kvSnaps}`, // first agent creates the buckets
        '$JS.API.STREAM.MSG.GET.*',
        '$JS.API.DIRECT.GET.>', // reads: records, KV gets
        '$JS.API.CONSUMER.CREATE.*',
        '$JS.API.CONSUMER.CREATE.*.>', // ordered consumers (reads, KV keys)
        `$JS.API.CONSUMER.DURABLE.CREATE.${ev}.${durable}`, // its worker-facts feed
        '$JS.API.CONSUMER.INFO.*.*',
        '$JS.API.CONSUMER.DELETE.*.*',
        '$JS.API.CONSUMER.MSG.NEXT.*.*',
        `$JS.ACK.${ev}.${durable}.>`,
        '$JS.FC.>', // flow control of push consumers (KV watch)
      ],
    },
    subscribe: { allow: [`corral.v1.node.${node}.>`, '_INBOX.>'] },
  };
}

/** The fleet controller: the fleet subject, every node's createInline, the registry, lost marks. */
export function controllerPermissions(): Permissions {
  return {
    publish: {
      allow: [
        'corral.v1.node.*.task.createInline',
        'corral.v1.node.*.task.delete',
        'corral.v1.node.*.task.kill',
        'corral.v1.node.*.task.list',
        'corral.v1.fleet.>',
        'corral.v1.evt.*.*.lost',
        '_INBOX.>',
        `$KV.${BUCKETS.nodes}.*`,
        '$JS.API.>',
        '$JS.FC.>',
        '$JS.ACK.>',
      ],
    },
    subscribe: { allow: ['corral.v1.fleet.>', '_INBOX.>'] },
  };
}

/** The `authorization { users: [...] }` block for nats-server's config. */
export function authorizationBlock(users: AuthUser[]): string {
  const list = (xs: string[]) => `[${xs.map(q).join(', ')}]`;
  const lines = ['authorization {', '  users: ['];
  for (const u of users) {
    if (!/^U[A-Z2-7]{55}$/.test(u.nkey)) throw err.invalid(`not a user public NKEY: ${u.nkey}`);
    lines.push(`    # ${u.role}`);
    if (!u.permissions) {
      lines.push(`    { nkey: ${q(u.nkey)} }`);
      continue;
    }
    lines.push(`    { nkey: ${q(u.nkey)}, permissions: {`);
    lines.push(`        publish: { allow: ${list(u.permissions.publish.allow)} }`);
    lines.push(`        subscribe: { allow: ${list(u.permissions.subscribe.allow)} }`);
    lines.push('    } }');
  }
  lines.push('  ]', '}', '');
  return lines.join('\n');
}

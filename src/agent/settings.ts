/**
 * Corral's own settings for one node (not Kata's TOML): from flags, then env, then defaults;
 * validated once, then frozen. The env they read is the one the process entry (cli/main.ts) hands
 * down, never `process.env` itself. Outside these settings only process-level knobs read the env:
 * `CORRAL_NATS_SERVER` (which nats-server binary, bus/server.ts), `CORRAL_LOG_LEVEL` (the default log
 * level, log.ts), `CORRAL_DEBUG` (stack traces from the CLI) and `PATH` (passed on to QEMU).
 */
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { err } from '../errors.ts';
import { DEFAULT_NATS_URL } from '../bus/connection.ts';
import { nodeName } from '../bus/node-name.ts';
import { DEFAULT_RETENTION_MS } from '../bus/retention.ts';
import { parseDuration } from '../util/duration.ts';
import { NAME_PREFIX, SUN_PATH_MAX, vmSocketBytes } from '../workers/hypervisor/qemu-args.ts';

export interface Settings {
  /** Node name: a NATS subject token. @default the hostname */
  node: string;
  /** @default nats://127.0.0.1:4222 */
  natsUrl: string;
  /** Durable state: worker journals, logs. @default /var/lib/corral */
  dataDir: string;
  /** Volatile state: sandbox dirs, shared dirs, VM sockets. @default /run/corral */
  runDir: string;
  /** Bundles must resolve inside one of these. @default [/run/containerd, <dataDir>/bundles] */
  bundleRoots: string[];
  /** `io.katacontainers.config_path` is honoured only inside these. @default [/etc/corral/configs] */
  configRoots: string[];
  /** Default runtime config search paths, first found wins. */
  defaultConfigPaths: string[];
  /** `CORRAL_CONF_FILE` / `KATA_CONF_FILE`, captured here so the create path never reads env. */
  confFileEnv: { CORRAL_CONF_FILE?: string; KATA_CONF_FILE?: string };
  /** host:port of the management endpoint (/metrics, /healthz); port 0 picks one. @default 127.0.0.1:0 */
  metricsAddr: string;
  logLevel: string;
  /**
   * Event log: a sandbox's records are purged this long after it was deleted (src/bus/retention.ts).
   * @default 7 days
   */
  eventRetentionMs: number;
  /** NKEY seed file the node connects with (`--creds` / CORRAL_CREDS; infra/nats/gen-creds.ts). @default none */
  credsFile?: string;
  /**
   * Replicas of CORRAL_EVENTS and the KV buckets when this node creates them (`--replicas` /
   * CORRAL_REPLICAS; 3 on a 3-server cluster). @default 1
   */
  replicas: number;
}

export type Flags = Partial<
  Record<
    | 'node'
    | 'nats'
    | 'dataDir'
    | 'runDir'
    | 'bundleRoot'
    | 'configRoot'
    | 'metrics'
    | 'logLevel'
    | 'eventRetention'
    | 'creds'
    | 'replicas',
    string | string[]
  >
>;

const list = (v: string | string[] | undefined): string[] | undefined =>
  v === undefined ? undefined : (Array.isArray(v) ? v : v.split(':')).filter(Boolean);
const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[v.length - 1] : v);

function absDir(name: string, v: string): string {
  if (!v || v.includes('\0')) throw err.invalid(`${name} must be a path, got ${JSON.stringify(v)}`);
  return isAbsolute(v) ? resolve(v) : resolve(process.cwd(), v);
}

export function loadSettings(flags: Flags, env: NodeJS.ProcessEnv): Readonly<Settings> {
  const node = one(flags.node) ?? env.CORRAL_NODE ?? hostname().split('.')[0]!;
  nodeName(node, 'node name (--node / CORRAL_NODE)');
  const natsUrl = one(flags.nats) ?? env.NATS_URL ?? DEFAULT_NATS_URL;
  for (const u of natsUrl.split(',')) {
    try {
      const p = new URL(u.includes('://') ? u : `nats://${u}`);
      if (!p.hostname) throw new Error();
    } catch {
      throw err.invalid(`--nats / NATS_URL is not a URL: ${JSON.stringify(u)}`);
    }
  }
  const dataDir = absDir(
    '--data-dir / CORRAL_DATA_DIR',
    one(flags.dataDir) ?? env.CORRAL_DATA_DIR ?? '/var/lib/corral',
  );
  const runDir = absDir('--run-dir / CORRAL_RUN_DIR', one(flags.runDir) ?? env.CORRAL_RUN_DIR ?? '/run/corral');
  const bundleRoots = (
    list(flags.bundleRoot) ??
    list(env.CORRAL_BUNDLE_ROOTS) ?? ['/run/containerd', `${dataDir}/bundles`]
  ).map((p) => absDir('bundle root', p));
  const configRoots = (list(flags.configRoot) ?? list(env.CORRAL_CONFIG_ROOTS) ?? ['/etc/corral/configs']).map((p) =>
    absDir('config root', p),
  );
  const metricsAddr = one(flags.metrics) ?? env.CORRAL_METRICS_ADDR ?? '127.0.0.1:0';
  if (!/^[\w.-]+:\d{1,5}$/.test(metricsAddr))
    throw err.invalid(`--metrics / CORRAL_METRICS_ADDR must be host:port, got ${JSON.stringify(metricsAddr)}`);
  const credsFile = ((v) => (v ? absDir('--creds / CORRAL_CREDS', v) : undefined))(
    one(flags.creds) ?? env.CORRAL_CREDS,
  );
  const replicas = Number(one(flags.replicas) ?? env.CORRAL_REPLICAS ?? 1);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5)
    throw err.invalid(
      `--replicas / CORRAL_REPLICAS must be 1..5, got ${JSON.stringify(one(flags.replicas) ?? env.CORRAL_REPLICAS)}`,
    );
  return Object.freeze({
    ...(credsFile ? { credsFile } : {}),
    replicas,
    node,
    natsUrl,
    dataDir,
    runDir,
    bundleRoots,
    configRoots,
    metricsAddr,
    defaultConfigPaths: ['/etc/corral/configuration.toml', '/usr/share/defaults/corral/configuration.toml'],
    confFileEnv: {
      CORRAL_CONF_FILE: env.CORRAL_CONF_FILE || undefined,
      KATA_CONF_FILE: env.KATA_CONF_FILE || undefined,
    },
    logLevel: one(flags.logLevel) ?? env.CORRAL_LOG_LEVEL ?? 'info',
    eventRetentionMs: parseDuration(
      one(flags.eventRetention) ?? env.CORRAL_EVENT_RETENTION,
      '--event-retention / CORRAL_EVENT_RETENTION',
      DEFAULT_RETENTION_MS,
    ),
  });
}

/** Where a sandbox keeps its things on the host. */
export const paths = {
  sandboxDir: (s: Settings, sid: string) => `${s.runDir}/sandboxes/${sid}`,
  sharedDir: (s: Settings, sid: string) => `${s.runDir}/sandboxes/${sid}/shared`,
  sharedRootfs: (s: Settings, sid: string, cid: string) => `${s.runDir}/sandboxes/${sid}/shared/${cid}/rootfs`,
  /** VM sockets and logs, of every sandbox (socket names are short: qemu-args.ts `vmPaths`). */
  vmDir: (s: Pick<Settings, 'runDir'>) => `${s.runDir}/vm`,
};

/**
 * Refuse a run dir too long for the VM sockets under it (a unix socket path is at most 107 bytes): the
 * agent, its workers and `corral up` call it before anything else, so nothing is started or written.
 * @throws InvalidArgument naming the run dir and the longest run dir that fits.
 */
export function checkRunDir(runDir: string): void {
  const dir = paths.vmDir({ runDir });
  const bytes = vmSocketBytes(dir);
  if (bytes <= SUN_PATH_MAX) return;
  const max = SUN_PATH_MAX - (bytes - Buffer.byteLength(runDir));
  throw err.invalid(
    `run dir ${runDir} (--run-dir / CORRAL_RUN_DIR) is too long: a VM socket under it ` +
      `(${dir}/${NAME_PREFIX}<hash>.agent) would be ${bytes} bytes, over the ${SUN_PATH_MAX} a unix socket path ` +
      `allows; choose a run dir of at most ${max} bytes`,
  );
}

/**
 * Commands inside one network namespace (`nsenter --net=<path> -- <cmd>`, through workers/exec.ts: no
 * shell, a deadline, stderr in every error), and what `ip -j` and `tc -j` say there, parsed into the few
 * fields the network worker reads. Namespaces are named by path, so a CNI namespace anywhere works, not
 * only those under /run/netns.
 */
import { statfs } from 'node:fs/promises';
import { err } from '../../errors.ts';
import { run, type RunResult } from '../exec.ts';

/** `NSFS_MAGIC`: the filesystem type of a namespace file (`ip netns add` bind-mounts one per namespace). */
const NSFS_MAGIC = 0x6e736673;
/** One helper command may take this long. */
const COMMAND_MS = 10_000;

export interface Ns {
  netns: string;
  signal: AbortSignal;
}

/** Whether `path` is a namespace file (missing, or a plain file left behind by `ip netns del`: false). */
export async function isNamespace(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === NSFS_MAGIC;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err.internal(`network namespace ${path}: ${(e as Error).message}`, e);
  }
}

/** Run `cmd args` in the namespace; a non-zero exit rejects unless `okCodes` says otherwise. */
export function inNs(ns: Ns, cmd: string, args: string[], okCodes?: readonly number[] | 'any'): Promise<RunResult> {
  return run('nsenter', [`--net=${ns.netns}`, '--', cmd, ...args], {
    signal: ns.signal,
    timeoutMs: COMMAND_MS,
    ...(okCodes ? { okCodes } : {}),
  });
}

/** `sh -c script` in the namespace with positional arguments: several commands that a dying worker cannot split. */
export const shInNs = (ns: Ns, script: string, args: string[]): Promise<RunResult> =>
  inNs(ns, 'sh', ['-ec', script, 'sh', ...args]);

export interface Link {
  ifindex: number;
  name: string;
  mac: string;
  mtu: number;
  /** `veth`, `tun`, `macvtap`, `bridge`, ... (`ip -d` linkinfo.info_kind); '' for lo and plain devices. */
  kind: string;
  alias: string;
  loopback: boolean;
}

const json = (what: string, r: RunResult): unknown => {
  try {
    return JSON.parse(r.stdout || '[]');
  } catch (e) {
    throw err.internal(`${what}: output is not JSON: ${r.stdout.slice(0, 200)}`, e);
  }
};
const rows = (v: unknown): Record<string, unknown>[] =>
  Array.isArray(v) ? v.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null) : [];
const s = (v: unknown): string => (typeof v === 'string' ? v : '');
const n = (v: unknown): number => (typeof v === 'number' ? v : 0);

export async function links(ns: Ns): Promise<Link[]> {
  return rows(json('ip -d -j link show', await inNs(ns, 'ip', ['-d', '-j', 'link', 'show']))).map((l) => ({
    ifindex: n(l.ifindex),
    name: s(l.ifname),
    mac: s(l.address).toLowerCase(),
    mtu: n(l.mtu),
    kind: s((l.linkinfo as { info_kind?: unknown } | undefined)?.info_kind),
    alias: s(l.ifalias),
    loopback: l.link_type === 'loopback',
  }));
}

/** The addresses of a link in CIDR form, without IPv6 link-local ones (the guest's kernel makes its own). */
export async function addresses(ns: Ns, dev: string): Promise<string[]> {
  const r = await inNs(ns, 'ip', ['-j', 'addr', 'show', 'dev', dev]);
  return rows(json('ip -j addr show', r)).flatMap((l) =>
    rows(l.addr_info)
      .filter((a) => (a.family === 'inet' || a.family === 'inet6') && a.scope !== 'link' && s(a.local))
      .map((a) => `${s(a.local)}/${n(a.prefixlen)}`),
  );
}

export interface Route {
  family: 4 | 6;
  dst: string;
  gateway?: string;
  dev: string;
}

/**
 * The main table's unicast routes the guest needs: not those the kernel made from addresses (`proto kernel`),
 * which the guest's kernel makes again from the same addresses.
 */
export async function routes(ns: Ns): Promise<Route[]> {
  const out: Route[] = [];
  for (const family of [4, 6] as const) {
    const r = await inNs(ns, 'ip', [`-${family}`, '-j', 'route', 'show', 'table', 'main']);
    for (const x of rows(json('ip -j route show', r))) {
      if (x.protocol === 'kernel' || (x.type !== undefined && x.type !== 'unicast') || !s(x.dev)) continue;
      out.push({
        family,
        dst: s(x.dst) || 'default',
        dev: s(x.dev),
        ...(s(x.gateway) ? { gateway: s(x.gateway) } : {}),
      });
    }
  }
  return out;
}

/** The devices that have an ingress qdisc (`tc qdisc add dev <d> ingress`). */
export async function ingressDevs(ns: Ns): Promise<Set<string>> {
  const r = await inNs(ns, 'tc', ['-j', 'qdisc', 'show']);
  return new Set(
    rows(json('tc -j qdisc show', r))
      .filter((q) => q.kind === 'ingress')
      .map((q) => s(q.dev)),
  );
}

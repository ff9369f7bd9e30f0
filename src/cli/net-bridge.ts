/**
 * `corral run --net bridge`: networking for trying Corral without containerd. Before the create, the CLI
 * does what containerd's CRI plugin would: a network namespace (`/run/netns/corral-run.<id>`) with lo up
 * and one veth on the local bridge `corral0`, made by Debian's CNI plugins (bridge + host-local +
 * loopback, /usr/lib/cni). The subnet 10.213.0.0/24 is the bridge's alone: the host has 10.213.0.1 on it
 * (so it reaches its sandboxes and they reach it and each other); there is no default route, no NAT and no
 * IP forwarding (the bridge plugin runs with `isGateway: false`, so it does not switch forwarding on).
 * The sandbox gets the namespace through a bundle derived from the given one (`<bundle>/.corral-net-<id>/`:
 * its config.json plus the namespace; the root path made absolute unless `--rootfs` mounts onto the derived
 * bundle's own `rootfs`), and Kata's runtime annotations `internetworking_model = tcfilter` and
 * `disable_new_netns = false` unless config.json sets them (the shipped config plumbs nothing). `down()`
 * undoes it all after the run: CNI DEL, the namespace, the derived bundle, and the bridge once no sandbox
 * uses it.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { err } from '../errors.ts';
import { cni, CNI_PATH } from '../util/cni.ts';
import { run } from '../workers/exec.ts';

export const BRIDGE = 'corral0';
export const SUBNET = '10.213.0.0/24';
const HOST_ADDR = '10.213.0.1';
const IPAM_DIR = '/run/corral/cni-ipam';

export interface RunNet {
  netns: string;
  /** The sandbox's address (CIDR). */
  address: string;
  /** The derived bundle to create the sandbox from. */
  bundle: string;
  down(): Promise<void>;
}

const bridgeConf = {
  cniVersion: '1.0.0',
  name: 'corral-run',
  type: 'bridge',
  bridge: BRIDGE,
  isGateway: false,
  ipMasq: false,
  ipam: { type: 'host-local', dataDir: IPAM_DIR, ranges: [[{ subnet: SUBNET, gateway: HOST_ADDR }]] },
};
const loConf = { cniVersion: '1.0.0', name: 'lo', type: 'loopback' };
/** Kata's runtime annotations (not gated by `enable_annotations`): plumb the namespace's veth with tc redirects. */
const NET_ANNOTATIONS = {
  'io.katacontainers.config.runtime.internetworking_model': 'tcfilter',
  'io.katacontainers.config.runtime.disable_new_netns': 'false',
};
const ip = (...args: string[]) => run('ip', args, { timeoutMs: 10_000 });

export async function bridgeNet(id: string, bundle: string, ownRootfs: boolean): Promise<RunNet> {
  if (!existsSync(join(CNI_PATH, 'bridge')))
    throw err.precondition(
      `--net bridge needs the CNI plugins in ${CNI_PATH} (apt-get install containernetworking-plugins)`,
    );
  const name = `corral-run.${id}`;
  const netns = `/run/netns/${name}`;
  if (existsSync(netns)) throw err.exists(`network namespace ${netns} exists already (another run with id ${id}?)`);
  const call = { containerId: `corral-run-${id}`, netns, ifname: 'eth0' } as const;
  const derived = join(bundle, `.corral-net-${id}`);
  const undo: (() => Promise<unknown>)[] = [];
  const down = async () => {
    for (const u of undo.reverse())
      await u().catch(() => {
        // Best effort: what stays (a bridge another run still uses) is said by `ip netns` / `ip link`.
      });
    undo.length = 0;
  };
  try {
    await ip('netns', 'add', name);
    undo.push(() => ip('netns', 'del', name));
    await cni({ ...call, command: 'ADD', ifname: 'lo', conf: loConf });
    undo.push(() => cni({ ...call, command: 'DEL', conf: bridgeConf }).then(removeIdleBridge));
    const r = await cni({ ...call, command: 'ADD', conf: bridgeConf });
    await hostAddress();
    writeDerived(bundle, derived, netns, ownRootfs);
    undo.push(async () => removeDerived(derived));
    return { netns, address: r.ips?.[0]?.address ?? '', bundle: derived, down };
  } catch (e) {
    await down();
    throw e;
  }
}

/** The host's address on the bridge (the bridge plugin made the bridge; without isGateway it adds none). */
async function hostAddress(): Promise<void> {
  const r = await ip('-j', 'addr', 'show', 'dev', BRIDGE);
  const has = (JSON.parse(r.stdout || '[]') as { addr_info?: { local?: string }[] }[]).some((l) =>
    (l.addr_info ?? []).some((a) => a.local === HOST_ADDR),
  );
  if (!has) await run('ip', ['addr', 'add', `${HOST_ADDR}/24`, 'dev', BRIDGE], { timeoutMs: 10_000, okCodes: [0, 2] });
}

/** The bridge (and its address store) goes with its last port (CNI never removes bridges; this one is Corral's). */
async function removeIdleBridge(): Promise<void> {
  const ports = await ip('-j', 'link', 'show', 'master', BRIDGE);
  if ((JSON.parse(ports.stdout || '[]') as unknown[]).length > 0) return;
  await ip('link', 'del', BRIDGE);
  rmSync(join(IPAM_DIR, bridgeConf.name), { recursive: true, force: true }); // host-local's store, no lease left
}

function writeDerived(bundle: string, derived: string, netns: string, ownRootfs: boolean): void {
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as Record<string, unknown> & {
    root?: { path?: string };
    linux?: { namespaces?: { type: string; path?: string }[] };
    annotations?: Record<string, string>;
  };
  const linux = spec.linux ?? {};
  const namespaces = (linux.namespaces ?? []).filter((n) => n.type !== 'network');
  const root = spec.root ?? {};
  const path = root.path ?? 'rootfs';
  mkdirSync(derived, { mode: 0o711 });
  writeFileSync(
    join(derived, 'config.json'),
    JSON.stringify({
      ...spec,
      root: { ...root, path: ownRootfs || isAbsolute(path) ? path : join(bundle, path) },
      annotations: { ...NET_ANNOTATIONS, ...spec.annotations },
      linux: { ...linux, namespaces: [...namespaces, { type: 'network', path: netns }] },
    }),
  );
}

/** Only what was written: the config, then directories that are empty (never the contents of a mount). */
function removeDerived(derived: string): void {
  rmSync(join(derived, 'config.json'), { force: true });
  for (const d of [join(derived, 'rootfs'), derived]) {
    try {
      rmdirSync(d);
    } catch {
      /* not empty or gone: leave it */
    }
  }
}

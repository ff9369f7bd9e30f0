/**
 * A sandbox's network, as the network worker finds and plumbs it and the hypervisor worker hands it to
 * QEMU and the guest (docs/decisions/0011-networking.md). Plain data, no effects.
 *
 * The network namespace is the one config.json names (`linux.namespaces` `{type: "network", path}`: CNI
 * put the interfaces there), or one Corral made. Inside it, each veth CNI made is connected to a tap that
 * QEMU reads: by two tc mirred redirects (`tcfilter`, Kata's default) or as a macvtap on the veth
 * (`macvtap`). The guest gets one virtio-net NIC per veth, with the veth's MAC, MTU, addresses and routes.
 */

/** Kata's `internetworking_model` values that plumb something (`none`: no step at all). */
export type NetModel = 'tcfilter' | 'macvtap';
export const NET_MODELS: readonly NetModel[] = ['tcfilter', 'macvtap'];

/** How QEMU reaches one NIC. */
export type NicTap =
  /** A tap in the namespace, opened by name by QEMU running inside the namespace. */
  | { kind: 'tap'; name: string }
  /**
   * A macvtap on the veth: its character device (`/dev/tap<ifindex>`), opened by the hypervisor worker and
   * passed to QEMU as an fd.
   */
  | { kind: 'macvtap'; name: string; device: string };

/** One NIC of the guest: an interface CNI put into the namespace. */
export interface GuestNic {
  /** The interface's name in the namespace (CNI_IFNAME, e.g. `eth0`): the guest names its NIC the same. */
  name: string;
  /** The veth's MAC (lower-case `aa:bb:cc:dd:ee:ff`): the guest's NIC gets it, as the bridge expects. */
  mac: string;
  mtu: number;
  /** Addresses in CIDR form (`10.1.0.5/24`, `fd00::5/64`); IPv6 link-local ones are left to the guest's kernel. */
  addrs: string[];
  tap: NicTap;
}

/** A route of the namespace's main table (not those the kernel derives from addresses), for the guest. */
export interface GuestRoute {
  family: 4 | 6;
  /** `default` or a prefix (`10.99.0.0/16`, `10.1.0.7`). */
  dst: string;
  gateway?: string;
  /** The NIC (its {@link GuestNic.name}). */
  dev: string;
}

/** What `setup` made and read: what `boot` needs to give the guest its network. */
export interface SandboxNetwork {
  /** The namespace's path (QEMU runs inside it). */
  netns: string;
  nics: GuestNic[];
  routes: GuestRoute[];
}

/**
 * The ifalias Corral puts on every link it makes in a namespace: `corral:<node>:<sandboxId>:<veth>`. It
 * says whose the link is (teardown, leak checks) and which veth it serves (whose ingress qdisc to remove).
 * Node names and sandbox ids cannot hold `:`.
 */
export const linkAlias = (node: string, sandboxId: string, veth: string): string =>
  `corral:${node}:${sandboxId}:${veth}`;

export function parseLinkAlias(alias: string): { node: string; sandboxId: string; veth: string } | null {
  const m = /^corral:([^:]+):([^:]+):([^:]+)$/.exec(alias);
  return m ? { node: m[1]!, sandboxId: m[2]!, veth: m[3]! } : null;
}

/** The name of the tap (or macvtap) of a sandbox's i-th NIC in its namespace (at most 15 bytes). */
export const tapName = (i: number): string => `tap${i}_corral`;

/** Where `ip netns add` (and containerd's CRI plugin) pin namespaces; Corral makes its own there too. */
export const NETNS_DIR = '/run/netns';

/**
 * The namespace Corral makes for a sandbox whose config.json names none (Kata's `NetworkCreated`):
 * `/run/netns/corral.<node>.<sandboxId>` (node names hold no `.`, so the node's prefix is unambiguous).
 */
export const corralNetns = (node: string, sandboxId: string): string => `${NETNS_DIR}/corral.${node}.${sandboxId}`;

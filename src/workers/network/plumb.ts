/**
 * A sandbox's NICs in its network namespace (NetworkOps `setup` and `teardown`, domain/ops.ts), the way
 * Kata plumbs them:
 * - `tcfilter`: per veth a tap `tap<i>_corral` and two ingress
 *   redirects, `tc filter add dev <veth> parent ffff: protocol all u32 match u8 0 0 action mirred egress
 *   redirect dev <tap>` and the same from the tap to the veth;
 * - `macvtap`: per veth a macvtap `tap<i>_corral` in passthru mode with the veth's MAC; QEMU gets its
 *   character device `/dev/tap<ifindex>` (opened by the hypervisor worker).
 * Every link made carries the alias `corral:<node>:<sandbox>:<veth>` (domain/network.ts), set in the same
 * helper process that makes it, so a worker killed in between leaves nothing it cannot find again.
 * Teardown removes the ingress qdiscs of the veths those aliases name, then the links.
 */
import { stat } from 'node:fs/promises';
import { err } from '../../errors.ts';
import { linkAlias, parseLinkAlias, tapName, type GuestNic } from '../../domain/network.ts';
import type { OpArgs, OpResult } from '../../domain/ops.ts';
import { addresses, ingressDevs, inNs, isNamespace, links, routes, shInNs, type Link, type Ns } from './ns-exec.ts';

export interface PlumbContext {
  node: string;
  signal: AbortSignal;
}

const TAP = /^tap\d+_corral$/;
/** Undoing a failed setup gets this long of its own (the op's signal may be what ended it). */
const UNDO_MS = 15_000;

const REDIRECT = 'protocol all u32 match u8 0 0 action mirred egress redirect dev';
const TCFILTER = [
  'v=$1 t=$2',
  'tc qdisc add dev "$v" ingress',
  `tc filter add dev "$v" parent ffff: ${REDIRECT} "$t"`,
  'tc qdisc add dev "$t" ingress',
  `tc filter add dev "$t" parent ffff: ${REDIRECT} "$v"`,
].join('\n');
const MAKE_TAP = [
  't=$1 a=$2 m=$3',
  'ip tuntap add dev "$t" mode tap',
  'ip link set dev "$t" alias "$a" mtu "$m" up',
].join('\n');
const MAKE_MACVTAP = [
  't=$1 v=$2 a=$3 mac=$4 m=$5',
  'ip link add link "$v" name "$t" type macvtap mode passthru',
  'ip link set dev "$t" alias "$a" address "$mac" mtu "$m" up',
].join('\n');

/** Is `l` a link of this sandbox (its alias), or a tap whose alias a killed helper never set? */
function mine(l: Link, node: string, sandboxId: string): boolean {
  const a = parseLinkAlias(l.alias);
  return a ? a.node === node && a.sandboxId === sandboxId : l.alias === '' && TAP.test(l.name);
}

export async function teardown(
  req: OpArgs<'network', 'teardown'>,
  ctx: PlumbContext,
): Promise<OpResult<'network', 'teardown'>> {
  if (!(await isNamespace(req.netns))) return { removed: [] };
  const ns: Ns = { netns: req.netns, signal: ctx.signal };
  const ours = (await links(ns)).filter((l) => mine(l, ctx.node, req.sandboxId));
  const removed: string[] = [];
  const ingress = await ingressDevs(ns);
  const veths = new Set(ours.flatMap((l) => parseLinkAlias(l.alias)?.veth ?? []));
  for (const v of veths) {
    if (!ingress.has(v)) continue;
    await inNs(ns, 'tc', ['qdisc', 'del', 'dev', v, 'ingress']);
    removed.push(`qdisc ingress of ${v}`);
  }
  for (const l of ours) {
    await inNs(ns, 'ip', ['link', 'del', 'dev', l.name]); // its own ingress qdisc goes with it
    removed.push(l.name);
  }
  return { removed };
}

export async function setup(req: OpArgs<'network', 'setup'>, ctx: PlumbContext): Promise<OpResult<'network', 'setup'>> {
  if (!(await isNamespace(req.netns))) throw err.notFound(`network namespace ${req.netns} does not exist`);
  // A setup that a killed worker began (the op re-sent with its opId) is removed first.
  await teardown(req, ctx);
  try {
    return await plumb({ netns: req.netns, signal: ctx.signal }, req, ctx.node);
  } catch (e) {
    await teardown(req, { node: ctx.node, signal: AbortSignal.timeout(UNDO_MS) }).catch(() => {
      // The agent's compensation (teardownNetwork) tries again: a failed setup is never a clean one unless it
      // failed before making anything (FailedPrecondition, NotFound).
    });
    throw e;
  }
}

async function plumb(ns: Ns, req: OpArgs<'network', 'setup'>, node: string): Promise<OpResult<'network', 'setup'>> {
  const all = await links(ns);
  const veths = all.filter((l) => l.kind === 'veth').sort((a, b) => a.ifindex - b.ifindex);
  const skipped = all.filter((l) => !l.loopback && l.kind !== 'veth').map((l) => `${l.name} (${l.kind || 'device'})`);
  if (req.model === 'tcfilter') {
    const busy = await ingressDevs(ns);
    const taken = veths.find((v) => busy.has(v.name));
    if (taken)
      throw err.precondition(`${taken.name} in ${req.netns} has an ingress qdisc already: cannot redirect it to a tap`);
  }
  const nics: GuestNic[] = [];
  for (const [i, v] of veths.entries()) {
    const addrs = await addresses(ns, v.name);
    const tap = tapName(i);
    const alias = linkAlias(node, req.sandboxId, v.name);
    nics.push({ name: v.name, mac: v.mac, mtu: v.mtu, addrs, tap: await connect(ns, req, v, tap, alias) });
  }
  const names = new Set(veths.map((v) => v.name));
  return { netns: req.netns, nics, routes: (await routes(ns)).filter((r) => names.has(r.dev)), skipped };
}

async function connect(
  ns: Ns,
  req: OpArgs<'network', 'setup'>,
  v: Link,
  tap: string,
  alias: string,
): Promise<GuestNic['tap']> {
  if (req.model === 'tcfilter') {
    await shInNs(ns, MAKE_TAP, [tap, alias, String(v.mtu)]);
    await shInNs(ns, TCFILTER, [v.name, tap]);
    return { kind: 'tap', name: tap };
  }
  await shInNs(ns, MAKE_MACVTAP, [tap, v.name, alias, v.mac, String(v.mtu)]);
  const made = (await links(ns)).find((l) => l.name === tap);
  const device = `/dev/tap${made?.ifindex ?? 0}`;
  const st = await stat(device).catch(() => undefined);
  if (!made || !st?.isCharacterDevice())
    throw err.internal(`macvtap ${tap} in ${req.netns}: no character device ${device} appeared`);
  return { kind: 'macvtap', name: tap, device };
}

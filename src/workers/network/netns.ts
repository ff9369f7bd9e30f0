/**
 * Namespaces Corral makes itself (Kata's `NetworkCreated`: the sandbox's config.json names none), by
 * `ip netns add` under /run/netns, where `ip netns` and operators see them; and the worker's `scan`: the
 * links of this node's sandboxes in every namespace there, and the namespaces Corral made for this node.
 */
import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { err } from '../../errors.ts';
import { NETNS_DIR, parseLinkAlias } from '../../domain/network.ts';
import type { OpArgs, OpResult } from '../../domain/ops.ts';
import { run } from '../exec.ts';
import { isNamespace, links } from './ns-exec.ts';

const COMMAND_MS = 10_000;

function nameOf(netns: string): string {
  if (dirname(netns) !== NETNS_DIR || !basename(netns).startsWith('corral.'))
    throw err.invalid(`netns ${JSON.stringify(netns)}: Corral makes and removes only ${NETNS_DIR}/corral.* namespaces`);
  return basename(netns);
}

export async function createNetns(
  req: OpArgs<'network', 'createNetns'>,
  signal: AbortSignal,
): Promise<OpResult<'network', 'createNetns'>> {
  const name = nameOf(req.netns);
  if (await isNamespace(req.netns)) return { created: false };
  await rm(req.netns, { force: true }); // a plain file a removal left behind blocks `ip netns add`
  await run('ip', ['netns', 'add', name], { signal, timeoutMs: COMMAND_MS });
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { signal, timeoutMs: COMMAND_MS });
  return { created: true };
}

export async function removeNetns(
  req: OpArgs<'network', 'removeNetns'>,
  signal: AbortSignal,
): Promise<OpResult<'network', 'removeNetns'>> {
  const name = nameOf(req.netns);
  if (!(await isNamespace(req.netns))) {
    await rm(req.netns, { force: true });
    return { removed: false };
  }
  await run('ip', ['netns', 'del', name], { signal, timeoutMs: COMMAND_MS });
  return { removed: true };
}

export async function scan(node: string, signal: AbortSignal): Promise<OpResult<'network', 'scan'>> {
  const names = await readdir(NETNS_DIR).catch(() => [] as string[]);
  const found: OpResult<'network', 'scan'>['links'] = [];
  for (const name of names) {
    const netns = join(NETNS_DIR, name);
    if (!(await isNamespace(netns).catch(() => false))) continue;
    const ls = await links({ netns, signal }).catch(() => []); // a namespace removed meanwhile
    for (const l of ls) {
      const a = parseLinkAlias(l.alias);
      if (a?.node === node) found.push({ netns, name: l.name, sandboxId: a.sandboxId, veth: a.veth });
    }
  }
  const mineNs = names.filter((n) => n.startsWith(`corral.${node}.`)).map((n) => join(NETNS_DIR, n));
  return { links: found, namespaces: mineNs };
}

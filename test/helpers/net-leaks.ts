/**
 * Network objects a node's sandboxes could leave behind, for leak checks: links carrying Corral's alias for
 * the node (taps, macvtaps: `corral:<node>:...`) in the root namespace and in every namespace under
 * /run/netns or given; ingress qdiscs in the namespaces the node's sandboxes were given (their config.json),
 * the only ones Corral adds qdiscs to; and the namespaces Corral made for the node (`/run/netns/corral.<node>.*`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const NETNS = '/run/netns';

function json(netns: string | null, cmd: string, args: string[]): Record<string, unknown>[] {
  try {
    const argv = netns ? ['--net=' + netns, '--', cmd, ...args] : [cmd, ...args];
    const out = execFileSync(netns ? 'nsenter' : cmd, netns ? argv : args, { encoding: 'utf8', stdio: 'pipe' });
    return JSON.parse(out || '[]') as Record<string, unknown>[];
  } catch {
    return []; // a namespace removed meanwhile
  }
}

/** The network namespace paths named in the config.json of each bundle under `bundlesDir`. */
export function bundleNetns(bundlesDir: string): string[] {
  if (!existsSync(bundlesDir)) return [];
  return readdirSync(bundlesDir).flatMap((b) => {
    try {
      const spec = JSON.parse(readFileSync(join(bundlesDir, b, 'config.json'), 'utf8')) as {
        linux?: { namespaces?: { type?: string; path?: string }[] };
      };
      return (spec.linux?.namespaces ?? []).flatMap((n) => (n.type === 'network' && n.path ? [n.path] : []));
    } catch {
      return [];
    }
  });
}

/** One line per leftover: `<netns>: link <name>`, `<netns>: ingress qdisc on <dev>`, `netns <path>`. */
export function netLeftovers(node: string, given: string[] = []): string[] {
  const named = existsSync(NETNS) ? readdirSync(NETNS).map((n) => join(NETNS, n)) : [];
  const out: string[] = [];
  for (const ns of [null, ...new Set([...named, ...given])]) {
    if (ns && !existsSync(ns)) continue;
    for (const l of json(ns, 'ip', ['-j', 'link', 'show']))
      if (String(l.ifalias ?? '').startsWith(`corral:${node}:`)) out.push(`${ns ?? 'host'}: link ${String(l.ifname)}`);
  }
  for (const ns of new Set(given)) {
    if (!existsSync(ns)) continue;
    for (const q of json(ns, 'tc', ['-j', 'qdisc', 'show']))
      if (q.kind === 'ingress') out.push(`${ns}: ingress qdisc on ${String(q.dev)}`);
  }
  for (const n of named) if (n.startsWith(`${NETNS}/corral.${node}.`)) out.push(`netns ${n}`);
  return out.sort();
}

/**
 * Reconciliation, the decision: what the host holds (from the workers' scans) against what the live
 * tasks own. Pure, so the table test in test/unit/reconcile.test.ts pins it down.
 *
 * A live task (anything not deleted, and not a failed create whose rollback finished) owns everything
 * of its sandbox: the VM named after it, its dir under `<runDir>/sandboxes/`, every mount below that
 * dir, and a VMM user made for it. Everything else Corral made is an orphan: of a sandbox whose task
 * is gone, or of a create that was interrupted before its log could say so.
 *
 * Corral only ever touches what is unmistakably its own: mounts under its run dir (never under bundle
 * roots such as /run/containerd, where containerd mounts for other runtimes), QEMU processes carrying
 * its `-name corral-<id>` marker, users named `corral-*` whose comment names a sandbox, network links
 * carrying its alias for this node, and its namespaces `/run/netns/corral.<node>.<sandbox>`.
 */
export interface Observed {
  /** Mount points (from /proc/self/mountinfo via the mount worker). */
  mounts: string[];
  vms: { sandboxId: string; pid: number }[];
  users: { name: string; uid: number; sandboxId: string | null }[];
  /** Entries of `<runDir>/sandboxes/`. */
  sandboxDirs: string[];
  /** Taps and macvtaps this node made (the network worker's scan), by sandbox and namespace. */
  netLinks?: { netns: string; sandboxId: string }[];
  /** Namespaces Corral made for this node's sandboxes. */
  netns?: { path: string; sandboxId: string }[];
}

export type Action =
  | { kind: 'stopVm'; sandboxId: string; pid: number }
  | { kind: 'unmount'; target: string; sandboxId: string }
  | { kind: 'removeTree'; path: string; sandboxId: string }
  | { kind: 'removeUser'; user: string; uid: number; sandboxId: string }
  | { kind: 'teardownNetwork'; netns: string; sandboxId: string }
  | { kind: 'removeNetns'; netns: string; sandboxId: string };

export function decideReconcile(observed: Observed, liveSandboxes: ReadonlySet<string>, runDir: string): Action[] {
  const base = `${runDir}/sandboxes/`;
  const sandboxOf = (path: string) => (path.startsWith(base) ? path.slice(base.length).split('/')[0] || null : null);
  const actions: Action[] = [];
  // VMs first: a VMM holds the share open; then mounts, deepest first; then dirs; then users.
  for (const vm of observed.vms)
    if (!liveSandboxes.has(vm.sandboxId)) actions.push({ kind: 'stopVm', sandboxId: vm.sandboxId, pid: vm.pid });
  // Then the network a VM used: its taps (once per sandbox and namespace), then the namespaces Corral made.
  const torn = new Set<string>();
  for (const l of observed.netLinks ?? []) {
    const key = `${l.sandboxId}\0${l.netns}`;
    if (liveSandboxes.has(l.sandboxId) || torn.has(key)) continue;
    torn.add(key);
    actions.push({ kind: 'teardownNetwork', netns: l.netns, sandboxId: l.sandboxId });
  }
  for (const n of observed.netns ?? [])
    if (!liveSandboxes.has(n.sandboxId)) actions.push({ kind: 'removeNetns', netns: n.path, sandboxId: n.sandboxId });
  const orphanMounts = observed.mounts
    .map((target) => ({ target, sandboxId: sandboxOf(target) }))
    .filter((m): m is { target: string; sandboxId: string } => m.sandboxId !== null && !liveSandboxes.has(m.sandboxId))
    .sort((a, b) => b.target.split('/').length - a.target.split('/').length || b.target.localeCompare(a.target));
  for (const m of orphanMounts) actions.push({ kind: 'unmount', target: m.target, sandboxId: m.sandboxId });
  for (const d of [...observed.sandboxDirs].sort())
    if (!liveSandboxes.has(d)) actions.push({ kind: 'removeTree', path: base + d, sandboxId: d });
  for (const u of observed.users)
    if (u.sandboxId !== null && !liveSandboxes.has(u.sandboxId))
      actions.push({ kind: 'removeUser', user: u.name, uid: u.uid, sandboxId: u.sandboxId });
  return actions;
}

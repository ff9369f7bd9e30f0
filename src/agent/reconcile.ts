/**
 * Reconciliation, applied: observe the host through the workers' scans (and the passwd database and
 * the run dir, both read-only), decide with `decideReconcile`, undo each orphan through the workers,
 * and report each one as an `orphan` event. Runs on agent start, after recovery.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { ensureError } from '../errors.ts';
import type { EventAppender } from '../bus/eventlog.ts';
import type { Logger } from '../log.ts';
import { NETNS_DIR } from '../domain/network.ts';
import { run } from '../workers/exec.ts';
import { decideReconcile, type Action, type Observed } from './reconcile-decide.ts';
import type { Settings } from './settings.ts';
import type { WorkerClient } from './worker-client.ts';

/** `Corral temporary hypervisor user of sandbox <id> on <node>` (see vmm-user.ts). */
const USER_COMMENT = /^Corral temporary hypervisor user of sandbox (\S+) on (\S+)$/;

export async function observe(workers: WorkerClient, s: Settings): Promise<Observed> {
  const [mounts, hv, passwd] = await Promise.all([
    workers.read('mount', 'scan', {}),
    workers.read('hypervisor', 'scan', {}),
    run('getent', ['passwd'], { timeoutMs: 5000, okCodes: 'any' }),
  ]);
  const users = passwd.stdout
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f[0]?.startsWith('corral-'))
    .map((f) => {
      const m = USER_COMMENT.exec(f[4] ?? '');
      return { name: f[0]!, uid: Number(f[2]), sandboxId: m?.[1] ?? null, node: m?.[2] ?? null };
    });
  // Several nodes may share a host (tests, `corral up --cluster`): a VM is this node's only if its
  // share lies under this node's run dir: its 9p -fsdev path, or (virtio-fs) the CORRAL_SHARE in its environment.
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8');
    } catch {
      return '';
    }
  };
  // A claimed pool VM's share started out in `<runDir>/pool/` (the worker's scan lists it under its sandbox).
  const shares = [`${s.runDir}/sandboxes/`, `${s.runDir}/pool/`];
  // Each file is read once per VM, the environment only when the command line does not say (1,000 VMs a scan).
  const ours = (pid: number) => {
    const cmdline = read(`/proc/${pid}/cmdline`);
    if (cmdline === '') return false; // gone meanwhile (or a simulated VM's made-up pid)
    if (shares.some((d) => cmdline.includes(`path=${d}`))) return true;
    const env = read(`/proc/${pid}/environ`).split('\0');
    return env.some((e) => shares.some((d) => e.startsWith(`CORRAL_SHARE=${d}`)));
  };
  let sandboxDirs: string[] = [];
  try {
    sandboxDirs = readdirSync(`${s.runDir}/sandboxes`);
  } catch {
    /* none yet */
  }
  return {
    mounts: mounts.mounts.map((m) => m.target),
    vms: hv.vms.filter((v) => ours(v.pid)),
    users: users.filter((u) => u.node === s.node),
    sandboxDirs,
    ...(await observeNetwork(workers, s.node)),
  };
}

/** The network worker's scan (its aliases name this node already); a node without that worker has none. */
async function observeNetwork(workers: WorkerClient, node: string): Promise<Pick<Observed, 'netLinks' | 'netns'>> {
  const net = await workers.read('network', 'scan', {}).catch(() => ({ links: [], namespaces: [] }));
  const prefix = `${NETNS_DIR}/corral.${node}.`;
  return {
    netLinks: net.links.map((l) => ({ netns: l.netns, sandboxId: l.sandboxId })),
    netns: net.namespaces.map((path) => ({ path, sandboxId: path.slice(prefix.length) })),
  };
}

/** Each undo gets this long; the worker answers Timeout (after undoing what it did) past it. */
const UNDO_DEADLINE_MS = 30_000;

export async function reconcile(
  d: {
    workers: WorkerClient;
    settings: Settings;
    events: EventAppender;
    log: Logger;
    /** What the host holds. @default the workers' scans and the host's users and run dir ({@link observe}) */
    observe?: () => Promise<Observed>;
  },
  live: ReadonlySet<string>,
): Promise<{ action: Action; ok: boolean }[]> {
  const observed = await (d.observe ? d.observe() : observe(d.workers, d.settings));
  const actions = decideReconcile(observed, live, d.settings.runDir);
  const runId = randomUUID();
  const done: { action: Action; ok: boolean }[] = [];
  for (const [i, a] of actions.entries()) {
    const o = { opId: `reconcile:${runId}:${i}`, deadlineMs: UNDO_DEADLINE_MS, signal: new AbortController().signal };
    let error: string | undefined;
    try {
      if (a.kind === 'stopVm') await d.workers.call('hypervisor', 'stop', { sandboxId: a.sandboxId }, o);
      else if (a.kind === 'unmount') await d.workers.call('mount', 'unmountAll', { target: a.target }, o);
      else if (a.kind === 'removeTree') await d.workers.call('mount', 'removeTree', { path: a.path }, o);
      else if (a.kind === 'teardownNetwork')
        await d.workers.call('network', 'teardown', { sandboxId: a.sandboxId, netns: a.netns }, o);
      else if (a.kind === 'removeNetns') await d.workers.call('network', 'removeNetns', { netns: a.netns }, o);
      else await d.workers.call('hypervisor', 'removeUser', { user: a.user, uid: a.uid }, o);
    } catch (e) {
      error = ensureError(e).message;
    }
    done.push({ action: a, ok: !error });
    await d.events
      .append(a.sandboxId, 'orphan', { action: a, ok: !error, ...(error ? { error } : {}) })
      .catch((e: unknown) => d.log.warn({ err: e, orphan: a }, 'orphan event not stored'));
  }
  return done;
}

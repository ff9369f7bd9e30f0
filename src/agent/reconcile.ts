/**
 * Reconciliation, applied: observe the host through the workers' scans (and the passwd database and
 * the run dir, both read-only), decide with `decideReconcile`, undo each orphan through the workers,
 * and report each one as an `orphan` event. Runs on agent start, after recovery.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { ensureError } from '../errors.ts';
import { request } from '../bus/rpc.ts';
import { subjects } from '../bus/subjects.ts';
import type { EventLog } from '../bus/eventlog.ts';
import { run } from '../workers/exec.ts';
import { decideReconcile, type Action, type Observed } from './reconcile-decide.ts';
import type { Settings } from './settings.ts';

/** `Corral temporary hypervisor user of sandbox <id> on <node>` (see vmm-user.ts). */
const USER_COMMENT = /^Corral temporary hypervisor user of sandbox (\S+) on (\S+)$/;

export async function observe(nc: NatsConnection, s: Settings): Promise<Observed> {
  const [mounts, hv, passwd] = await Promise.all([
    request<{ mounts: { target: string }[] }>(nc, subjects.worker(s.node, 'mount', 'scan'), {}, 10_000),
    request<{ vms: { sandboxId: string; pid: number }[] }>(
      nc,
      subjects.worker(s.node, 'hypervisor', 'scan'),
      {},
      10_000,
    ),
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
  // 9p share lies under this node's run dir.
  const ours = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`path=${s.runDir}/sandboxes/`);
    } catch {
      return false;
    }
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
  };
}

export async function reconcile(
  d: { nc: NatsConnection; settings: Settings; events: EventLog },
  live: ReadonlySet<string>,
): Promise<{ action: Action; ok: boolean }[]> {
  const actions = decideReconcile(await observe(d.nc, d.settings), live, d.settings.runDir);
  const runId = randomUUID();
  const done: { action: Action; ok: boolean }[] = [];
  for (const [i, a] of actions.entries()) {
    const base = { opId: `reconcile:${runId}:${i}`, deadlineMs: Date.now() + 30_000 };
    const w = (kind: 'mount' | 'hypervisor', op: string, body: Record<string, unknown>) =>
      request(d.nc, subjects.worker(d.settings.node, kind, op), { ...base, ...body }, 32_000);
    let error: string | undefined;
    try {
      if (a.kind === 'stopVm') await w('hypervisor', 'stop', { sandboxId: a.sandboxId });
      else if (a.kind === 'unmount') await w('mount', 'unmountAll', { target: a.target });
      else if (a.kind === 'removeTree') await w('mount', 'removeTree', { path: a.path });
      else await w('hypervisor', 'removeUser', { user: a.user, uid: a.uid });
    } catch (e) {
      error = ensureError(e).message;
    }
    done.push({ action: a, ok: !error });
    await d.events
      .append(a.sandboxId, 'orphan', { action: a as never, ok: !error, ...(error ? { error } : {}) })
      .catch(() => {});
  }
  return done;
}

/**
 * What must hold after a run, once every task was removed and every event has run:
 * - nothing leaked: no mount, dir, VMM user, VM or process on any host, no reservation in the registry,
 *   no task in any agent's table, no request of the ledger still in flight;
 * - no effect done twice (world.ts), no node past its capacity (fleet.ts; and VMs at once ≤ its slots);
 * - containerd's event order per task in the log: created < started < exited < deleted, each at most once;
 * - the log replays to the recorded states (replay/rebuild.ts on each sandbox's records, stopping at
 *   the first divergence).
 * (Each request copy answered at most once, and every request answered, consistently per
 * idempotency key, is checked as the answers arrive: run.ts.)
 */
import { rebuild } from '../src/replay/rebuild.ts';
import type { EventRecord } from '../src/bus/eventlog-reader.ts';
import type { SimRegistry } from './fleet.ts';
import type { SimNode } from './node.ts';

const ORDER = ['created', 'started', 'exited', 'deleted'] as const;

export async function checkInvariants(nodes: SimNode[], reg: SimRegistry): Promise<string[]> {
  const v: string[] = [...reg.violations];
  for (const left of reg.leftovers()) v.push(`leaked: ${left}`);
  for (const n of nodes) {
    v.push(...n.world.violations.map((x) => `${n.name}: ${x}`));
    for (const left of n.world.leftovers()) v.push(`${n.name}: leaked: ${left}`);
    const slots = reg.entries.get(n.name)!.capacity.sandboxes;
    if (n.world.maxVms > slots) v.push(`${n.name}: ran ${n.world.maxVms} VMs at once with ${slots} slots`);
    if (n.tasks && n.tasks.size > 0) v.push(`${n.name}: tasks left in the agent: ${n.tasks.ids().join(', ')}`);
    const ledger = n.ledgerSize;
    if (ledger && ledger.inflight > 0) v.push(`${n.name}: ${ledger.inflight} request(s) still in flight in the ledger`);
    v.push(...eventOrder(n.name, n.log.records));
    v.push(...(await replays(n.name, n.log.records)));
  }
  return v;
}

function eventOrder(node: string, records: EventRecord[]): string[] {
  const v: string[] = [];
  const seen = new Map<string, string[]>();
  for (const r of records) {
    if (!r.taskId || !(ORDER as readonly string[]).includes(r.kind)) continue;
    const list = seen.get(r.taskId) ?? [];
    if (list.includes(r.kind)) v.push(`${node}: task ${r.taskId}: ${r.kind} recorded twice (#${r.seq})`);
    const last = list.at(-1);
    if (last && ORDER.indexOf(r.kind as (typeof ORDER)[number]) < ORDER.indexOf(last as (typeof ORDER)[number]))
      v.push(`${node}: task ${r.taskId}: ${r.kind} (#${r.seq}) after ${last}`);
    if (r.kind !== 'created' && !list.includes('created'))
      v.push(`${node}: task ${r.taskId}: ${r.kind} (#${r.seq}) without created before it`);
    list.push(r.kind);
    seen.set(r.taskId, list);
  }
  return v;
}

async function replays(node: string, records: EventRecord[]): Promise<string[]> {
  const bySandbox = new Map<string, EventRecord[]>();
  for (const r of records) bySandbox.set(r.sandbox, [...(bySandbox.get(r.sandbox) ?? []), r]);
  const v: string[] = [];
  for (const [sandbox, recs] of bySandbox) {
    const r = await rebuild(recs, { stopOnDivergence: true });
    for (const t of r.tasks) t.actor.stop();
    if (r.divergence) v.push(`${node}: the log of ${sandbox} does not replay: ${JSON.stringify(r.divergence)}`);
  }
  return v;
}

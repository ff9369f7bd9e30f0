/**
 * One seeded run: a few nodes (their agents real, their hosts and bus simulated), a workload of fleet
 * creates, starts, kills and deletes with idempotency keys, and faults (agent crashes, worker
 * crashes, JetStream failovers, lost messages and acks, failing ops, controller crashes) at
 * generated times. Then the faults stop, every task left is removed through the Task API as a user
 * would, and the invariants are checked (invariants.ts).
 */
import type { Envelope } from '../src/bus/rpc.ts';
import type { TaskView } from '../src/domain/task.ts';
import type { WorkerKind } from '../src/domain/ops.ts';
import { Faults, type Mutation } from './faults.ts';
import { SimRegistry } from './fleet.ts';
import { checkInvariants } from './invariants.ts';
import { SimNode, type SimMsg } from './node.ts';
import { prng, Scheduler } from './sched.ts';

const HORIZON_MS = 60_000;
const MAX_STEPS = 200_000;
const ATTEMPTS = 40;
const ATTEMPT_MS = 10_000;

export interface RunResult {
  seed: number;
  violations: string[];
  /** The last steps, ids shortened. */
  trace: string[];
  stats: { nodes: number; tasks: number; created: number; crashes: number; steps: number; simMs: number };
}

type Env = Envelope<unknown>;
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** `ackLoss`: appends may be stored with their ack lost (SIM_ACKLOSS=1 for the command line). */
export async function runSeed(
  seed: number,
  mutation?: Mutation,
  o: { ackLoss?: boolean } = { ackLoss: process.env.SIM_ACKLOSS === '1' },
): Promise<RunResult> {
  const s = new Scheduler(prng(seed));
  const uninstall = s.install();
  const violations: string[] = [];
  const nodes: SimNode[] = [];
  const reg = new SimRegistry();
  let created = 0;
  try {
    const f = new Faults(s, mutation);
    for (let i = 0; i < s.between(1, 4); i++) {
      const n = new SimNode(`n${i}`, s, f);
      reg.add(n.name, s.between(1, 4));
      n.release = async (id) => reg.release(n.name, id);
      n.prune = (live, before) => reg.prune(n.name, live, before);
      n.log.ackLoss = o.ackLoss ? s.pick([0, 0.005, 0.02]) : 0;
      nodes.push(n);
      n.boot();
    }
    let calm = false;
    const sleep = (ms: number) => new Promise<void>((r) => s.at(ms, '', r));

    // ---- the client side: one copy of a request, and a request retried until it is answered
    let msgs = 0;
    let keys = 0;
    const answersOf = new Map<string, string>();
    const once = (node: SimNode, verb: string, body: Record<string, unknown>) =>
      new Promise<Env | 'lost' | 'nobody'>((resolve) => {
        const msg: SimMsg = {
          n: ++msgs,
          verb,
          body,
          answers: [],
          onAnswer: (env, gen) => {
            msg.answers.push(env);
            s.note(`client: ${verb} ${str(body.id)} #${msg.n} answered ${env.ok ? 'ok' : env.error.code}`);
            if (msg.answers.length > 1) violations.push(`request #${msg.n} (${verb} ${str(body.id)}) answered twice`);
            // A create's key is in its write-ahead input (it outlives the agent); start's, kill's and
            // delete's last one agent's lifetime (docs/api.md).
            const life = verb === 'create' ? '' : `@${gen}`;
            const key = body.requestId ? `${node.name}/${str(body.id)}/${str(body.requestId)}${life}` : undefined;
            const text = JSON.stringify(env);
            if (key && answersOf.has(key) && answersOf.get(key) !== text)
              violations.push(`${verb} ${key} answered differently: ${answersOf.get(key)} then ${text}`);
            if (key) answersOf.set(key, text);
            s.cancel(timer);
            resolve(env);
          },
        };
        const timer = s.at(ATTEMPT_MS, '', () => resolve('lost'));
        const { requestLost, delay } = f.message();
        s.note(`client: ${verb} ${str(body.id)} #${msg.n}${requestLost ? ' (lost)' : ''}`);
        if (!requestLost)
          s.at(delay, '', () => {
            if (!node.deliver(msg)) {
              s.cancel(timer);
              resolve('nobody');
            }
          });
      });
    const call = async (node: SimNode, verb: string, body: Record<string, unknown>): Promise<Env> => {
      let requestId = `rq${++keys}`;
      // No agent serving (it is starting, maybe through a failover) costs time, not attempts: 5 min at most.
      const until = s.now + 300_000;
      for (let i = 0; i < ATTEMPTS && s.now < until; i++) {
        const r = await once(node, verb, verb === 'list' ? body : { ...body, requestId });
        if (r === 'nobody') {
          i--;
          await sleep(s.between(100, 1000));
        } else if (r === 'lost')
          continue; // the same requestId: joins the first copy or gets its answer
        else if (!r.ok && r.error.code === 'Unavailable') {
          requestId = `rq${++keys}`; // answered Unavailable: a new request (idempotency.ts)
          await sleep(s.between(100, 1000));
        } else return r;
      }
      violations.push(`${verb} ${str(body.id)} on ${node.name} never answered (${ATTEMPTS} attempts, 5 min)`);
      return { ok: false, error: { code: 'Timeout', message: 'never answered', retryable: true } };
    };

    // ---- a task's life: a fleet create (reserve, create on the node), start, kill, delete
    const unanswered = new Set<string>();
    const life = async (id: string) => {
      const ref = `rq:fleet-${id}`;
      let node: SimNode | undefined;
      for (let i = 0; i < ATTEMPTS && !node; i++) {
        const h = reg.holder(id);
        let name: string;
        try {
          name = h ? h.node : reg.reserve(id, ref, Date.now());
        } catch {
          return; // no room: unplaceable
        }
        if (!calm && s.chance(0.05)) {
          s.note(`controller crashes placing ${id} (reserved on ${name})`);
          await sleep(s.between(100, 2000)); // another replica takes the repeated request
          continue;
        }
        const target = nodes.find((n) => n.name === name)!;
        const bundle = `/sim/${name}/bundles/${id}`;
        const body = {
          id,
          bundle,
          rootfs: [],
          terminal: false,
          stdin: '',
          stdout: '',
          stderr: '',
          requestId: `fleet-${id}`,
        };
        const r = await once(target, 'create', body);
        // No responder is the controller's Unavailable: it releases what it reserved (not a joined
        // reservation: an earlier copy may be on its way there) and places again.
        if (r === 'nobody' && !h) reg.release(name, id, ref);
        if (r === 'lost' || r === 'nobody') {
          await sleep(s.between(100, 1000));
          continue;
        }
        if (r.ok) {
          created++;
          node = target;
        } else {
          // Any answer is the node's last word (a Timeout it answered: a step timed out, rolled back);
          // silence ('lost' above) is what keeps the reservation, for the repeat to join.
          reg.release(name, id, ref);
          return;
        }
      }
      if (!node) {
        unanswered.add(id); // placed with no answer from the node: the reservation waits for the agents' pruning
        return;
      }
      await call(node, 'start', { id });
      await sleep(s.between(0, 3000));
      await call(node, 'kill', { id, signal: 9, all: false });
      for (let i = 0; i < ATTEMPTS; i++) {
        const r = await call(node, 'delete', { id });
        if (r.ok || r.error.code === 'NotFound') return;
        await sleep(s.between(50, 500));
      }
    };

    // ---- faults at generated times, then the workload
    const faults = s.between(0, 7);
    for (let i = 0; i < faults; i++)
      s.at(s.between(0, HORIZON_MS), '', () => {
        if (calm) return;
        const n = s.pick(nodes);
        const what = s.between(0, 3);
        if (what === 0) n.crash(s.between(50, 3000));
        else if (what === 1) {
          const kind = s.pick<WorkerKind>(['mount', 'hypervisor']);
          s.note(`${n.name}: ${kind} worker crashes`);
          n.world.crashWorker(kind, s.between(50, 2000));
        } else {
          s.note(`${n.name}: JetStream failover`);
          n.log.failover(s.between(100, 40_000));
        }
      });
    const tasks = s.between(1, 9);
    let finished = 0;
    for (let i = 0; i < tasks; i++)
      s.at(s.between(0, HORIZON_MS / 2), '', () => void life(`t${i}`).finally(() => finished++));
    await s.run(() => finished === tasks, MAX_STEPS);

    // ---- calm: no more faults; remove whatever is left as a user would
    calm = true;
    f.calm();
    for (const n of nodes) n.log.ackLoss = 0;
    let cleaned = false;
    void (async () => {
      for (let round = 0; round < 60; round++) {
        let left = 0;
        for (const n of nodes) {
          const r = await call(n, 'list', {});
          const list = r.ok ? (r.result as { tasks: TaskView[] }).tasks : [];
          left += list.length;
          for (const t of list)
            if (t.status === 'created' || t.status === 'running') await call(n, 'kill', { id: t.id, signal: 9 });
            else await call(n, 'delete', { id: t.id });
        }
        if (left === 0) break;
        await sleep(500);
      }
      // Every reservation of a create its node answered was released by that node (the rest wait
      // for the heartbeats: past 300 s they drop reservations of a controller that died or got silence).
      for (const l of reg.leftovers(unanswered)) violations.push(`not released by its node: ${l}`);
      await sleep(300_001);
      for (const n of nodes) n.heartbeatPrune();
      cleaned = true;
    })();
    await s.run(() => false, MAX_STEPS);
    if (!cleaned) violations.push(`the removal of what was left did not finish (${s.pending} events pending)`);
  } finally {
    uninstall();
  }
  violations.push(...(await checkInvariants(nodes, reg)));
  return {
    seed,
    violations,
    trace: shorten(s.trace.slice(-Number(process.env.SIM_TRACE ?? 40))),
    stats: {
      nodes: nodes.length,
      tasks: nodes.length,
      created,
      crashes: nodes.reduce((a, n) => a + n.crashes, 0),
      steps: s.steps,
      simMs: s.now,
    },
  };
}

/** UUIDs (instances, rids) as short stable names, so that two runs of a seed print the same trace. */
function shorten(lines: string[]): string[] {
  const names = new Map<string, string>();
  return lines.map((l) =>
    l.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, (u) => {
      if (!names.has(u)) names.set(u, `u${names.size + 1}`);
      return names.get(u)!;
    }),
  );
}

/**
 * `npm run soak -- [--ops N] [--seed S] [--real] [--json]` (issue 11, item 5): a node under random work and
 * random faults. Each step picks, from a seeded generator, a create, start, exec, kill or delete of a
 * random task, or a fault: the agent SIGKILLed and restarted, a worker SIGKILLed (the agent restarts it),
 * nats-server SIGKILLed and restarted. Up to CONCURRENCY operations are in flight; each must be answered
 * (a result or a catalogue error) within ANSWER_MS, never hang. At the end every task is removed as a
 * user would, and nothing may be left on the host (mounts, QEMU, virtiofsd, users, dirs, network).
 * Simulated VMs unless `--real`. Exits 1 naming what failed; the seed reproduces the choices.
 */
import { testNode, NOTHING_LEFT } from '../test/helpers/node.ts';
import { processesMatching } from '../test/helpers/leaks.ts';

const args = process.argv.slice(2);
const flag = (f: string, d: number) => (args.includes(f) ? Number(args[args.indexOf(f) + 1]) : d);
const ops = flag('--ops', 200);
const seed = flag('--seed', Date.now() % 1_000_000);
const json = args.includes('--json');
const CONCURRENCY = 6;
const ANSWER_MS = 120_000;
const IDS = 12;

/** mulberry32: a small seeded generator, so a run's choices are repeated by its seed. */
function rng(s: number) {
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const n = await testNode({ simulate: !args.includes('--real') });
const rand = rng(seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const counts: Record<string, { ok: number; errors: Record<string, number> }> = {};
const unanswered: string[] = [];
const bundle = n.bundle('soak', { args: ['sleep', '600'] });

async function answered(what: string, p: Promise<unknown>, onOk?: () => void) {
  const c = (counts[what.split(' ')[0]!] ??= { ok: 0, errors: {} });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ANSWER_MS)));
  try {
    const r = await Promise.race([p.then(() => 'ok' as const), late]);
    if (r === 'late') unanswered.push(what);
    else {
      c.ok++;
      onOk?.();
    }
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'thrown';
    c.errors[code] = (c.errors[code] ?? 0) + 1;
  } finally {
    clearTimeout(timer);
  }
}

const STEPS = ['create', 'start', 'exec', 'kill', 'delete'] as const;
type Verb = (typeof STEPS)[number];
/** What each id was last seen to be, so most steps are ones that can succeed (the rest stay random). */
const SENSIBLE = {
  none: ['create'],
  created: ['start', 'start', 'delete'],
  running: ['exec', 'exec', 'kill'],
  stopped: ['delete'],
} as const satisfies Record<string, readonly Verb[]>;
type Seen = keyof typeof SENSIBLE;
const seen = new Map<string, Seen>();
/** What a step that succeeded leaves its task as (an exec leaves it as it was). */
const AFTER: Partial<Record<Verb, Seen>> = { create: 'created', start: 'running', kill: 'stopped', delete: 'none' };
const FAULTS = ['agent', 'worker', 'nats'] as const;
/**
 * Which steps are faults, and which fault, fixed up front from the seed: the steps run concurrently, so
 * drawing them as the steps go would tie them to timing. About 6% of the steps, and at least one.
 */
const plan = new Map<number, { f: (typeof FAULTS)[number]; kind: 'mount' | 'hypervisor' }>();
const draw = () => ({ f: pick(FAULTS), kind: pick(['mount', 'hypervisor'] as const) });
for (let i = 0; i < ops; i++) if (rand() < 0.06) plan.set(i, draw());
if (plan.size === 0 && ops > 0) plan.set(Math.floor(ops / 2), draw());
let faults = 0;
const busy = new Set<string>();
async function step(i: number) {
  let id = `soak-${Math.floor(rand() * IDS)}`;
  for (let t = 0; t < 4 && busy.has(id); t++) id = `soak-${Math.floor(rand() * IDS)}`;
  const fault = plan.get(i);
  if (fault) {
    const { f, kind } = fault;
    faults++;
    if (f === 'agent') return answered('fault:agent', n.restartAgent());
    if (f === 'nats') return answered('fault:nats', n.restartNats());
    const [pid] = processesMatching(`worker ${kind} --node ${n.node} `);
    if (pid) process.kill(pid, 'SIGKILL');
    return;
  }
  const verb: Verb = rand() < 0.8 ? pick(SENSIBLE[seen.get(id) ?? 'none']) : pick(STEPS);
  const body: Record<string, unknown> =
    verb === 'create'
      ? { id, bundle }
      : verb === 'exec'
        ? { id, execId: `e${i}`, spec: { args: ['true'], env: ['PATH=/bin'] } }
        : verb === 'kill'
          ? { id, signal: 9 }
          : { id };
  busy.add(id);
  await answered(`${verb} ${id}`, n.call(verb, body, ANSWER_MS), () => {
    const after = AFTER[verb];
    if (after) seen.set(id, after);
  }).finally(() => busy.delete(id));
}

const t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    for (let i = next++; i < ops; i = next++) await step(i);
  }),
);
const ids = Array.from({ length: IDS }, (_, i) => `soak-${i}`);
await n.removeTasks(ids);
await n.removeTasks(ids); // a task whose create was still rolling forward the first time
const left = n.leftovers(ids);
const clean = JSON.stringify(left) === JSON.stringify(NOTHING_LEFT);
/** What a task that was left behind went through: its last recorded events (the reproduction starts here). */
const history: Record<string, string[]> = {};
if (!clean)
  for (const id of left.sandboxDirs) {
    const r = await n.cli(['events', '--sandbox', id]);
    history[id] = r.stdout.trim().split('\n').slice(-40);
  }
const report = {
  seed,
  ops,
  faults,
  seconds: (performance.now() - t0) / 1000,
  counts,
  unanswered,
  left,
  clean,
  history,
};
if (json) process.stdout.write(JSON.stringify(report) + '\n');
else {
  console.log(`soak: ${ops} operations, ${faults} faults, seed ${seed}, ${report.seconds.toFixed(1)} s`);
  for (const [v, c] of Object.entries(counts))
    console.log(`  ${v.padEnd(12)} ok ${c.ok}  errors ${JSON.stringify(c.errors)}`);
  console.log(unanswered.length ? `UNANSWERED: ${unanswered.join(', ')}` : 'every operation was answered');
  console.log(clean ? 'nothing left on the host' : `LEFT: ${JSON.stringify(left)}`);
  for (const [id, lines] of Object.entries(history))
    console.log(`events of ${id}, the last ${lines.length}:\n${lines.join('\n')}`);
  if (!clean || unanswered.length)
    console.log(`reproduce: npm run soak -- --ops ${ops} --seed ${seed}${args.includes('--real') ? ' --real' : ''}`);
}
await n.cleanup().catch((e: unknown) => console.error(`cleanup failed: ${String(e)}`));
process.exit(clean && unanswered.length === 0 ? 0 : 1);

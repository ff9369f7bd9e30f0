/**
 * `corral top`: what runs where, refreshing in place (a terminal without Grafana). Per node (every node of
 * the fleet registry, or the one node addressed when there is no fleet): its state and capacity use, the
 * last minute's creates and failed creates (from the event log), and its tasks (`list`). `--once` prints
 * one frame and exits (what a pipe gets); `--json` prints one frame as JSON. q or Ctrl-C quits.
 */
import { readRecords } from '../../bus/eventlog-reader.ts';
import { taskRequest } from '../../bus/task-client.ts';
import type { TaskView } from '../../domain/task.ts';
import { ensureError } from '../../errors.ts';
import { NodeRegistry } from '../../fleet/registry.ts';
import type { Versioned } from '../../fleet/types.ts';
import { duration, parse } from '../args.ts';
import type { Io } from '../io.ts';
import { age } from './fleet.ts';
import { withClient } from './task.ts';

export const TOP_USAGE = 'corral top [--interval D] [--once] [--json]';

interface NodeFrame {
  node: string;
  state?: string;
  used?: Versioned['entry']['used'];
  capacity?: Versioned['entry']['capacity'];
  lastMinute: { created: number; failed: number };
  tasks: Pick<TaskView, 'id' | 'kind' | 'sandboxId' | 'status' | 'state' | 'pid' | 'createdAt'>[];
  error?: string;
}

function table(rows: string[][]): string[] {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(w[i]!))
      .join('  ')
      .trimEnd(),
  );
}

export function renderTop(frames: NodeFrame[], now: number, every: string): string {
  const out = [`corral top  ${new Date(now).toISOString()}  every ${every}  (q quits)`, ''];
  for (const f of frames) {
    const u = f.used;
    const k = f.capacity;
    const cap =
      u && k
        ? `  sandboxes ${u.sandboxes}/${k.sandboxes}  vcpus ${u.vcpus}/${k.vcpus}  MiB ${u.memoryMiB}/${k.memoryMiB}`
        : '';
    const m = f.lastMinute;
    out.push(`NODE ${f.node}${f.state ? `  ${f.state}` : ''}${cap}  last 1m: ${m.created} created, ${m.failed} failed`);
    if (f.error) out.push(`  (cannot list: ${f.error})`);
    else if (f.tasks.length === 0) out.push('  no tasks');
    else {
      const rows = [['ID', 'KIND', 'SANDBOX', 'STATUS', 'STATE', 'PID', 'AGE']];
      for (const t of f.tasks)
        rows.push([t.id, t.kind, t.sandboxId, t.status, t.state, String(t.pid), age(now - t.createdAt)]);
      out.push(...table(rows).map((l) => `  ${l}`));
    }
    out.push('');
  }
  return out.join('\n');
}

export async function topCommand(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, { interval: { type: 'string' }, once: { type: 'boolean' } });
  const every = duration(p, 'interval', 2000);
  const once = p.values.once === true || p.values.json === true;
  return withClient(p, io, async (c) => {
    const registry = await NodeRegistry.open(c.nc).catch(() => undefined);
    const frame = async (): Promise<NodeFrame[]> => {
      const known = (await registry?.list().catch(() => [])) ?? [];
      const nodes = known.length ? known : [undefined];
      const since = Date.now() - 60_000;
      return Promise.all(
        nodes.map(async (v): Promise<NodeFrame> => {
          const node = v?.entry.node ?? c.node;
          const count = (kind: string) =>
            readRecords(c.nc, { node, kind, sinceTime: since }, { deadlineMs: 2000 }).then(
              (r) => r.length,
              () => 0,
            );
          const [created, failed] = await Promise.all([count('created'), count('rolledBack')]);
          const base = { node, state: v?.entry.state, used: v?.entry.used, capacity: v?.entry.capacity };
          try {
            const { tasks } = await taskRequest<{ tasks: TaskView[] }>(c.nc, node, 'list', {}, 5000);
            const pick = tasks.map(({ id, kind, sandboxId, status, state, pid, createdAt }) => ({
              ...{ id, kind, sandboxId, status, state, pid, createdAt },
            }));
            return { ...base, lastMinute: { created, failed }, tasks: pick };
          } catch (e) {
            return { ...base, lastMinute: { created, failed }, tasks: [], error: ensureError(e).message };
          }
        }),
      );
    };
    if (once) {
      const f = await frame();
      io.out(p.values.json ? JSON.stringify({ at: Date.now(), nodes: f }) : renderTop(f, Date.now(), 'once'));
      return 0;
    }
    return loop(io, () => frame(), p.values.interval ? String(p.values.interval) : '2s', every);
  });
}

/** Redraws every `ms` until q or Ctrl-C (raw mode: the keys come as bytes, not signals). */
async function loop(io: Io, frame: () => Promise<NodeFrame[]>, label: string, ms: number): Promise<number> {
  const input = io.stdin;
  const raw = input?.isTTY === true && typeof input.setRawMode === 'function';
  let done!: () => void;
  const quit = new Promise<void>((r) => (done = r));
  const onKey = (b: Buffer) => {
    if (b.includes(0x71) || b.includes(0x03)) done(); // q, Ctrl-C
  };
  if (raw) {
    input.setRawMode(true);
    input.on('data', onKey);
  }
  process.once('SIGINT', () => done());
  try {
    for (let stop = false; !stop;) {
      const text = renderTop(await frame(), Date.now(), label);
      io.stdout(Buffer.from(`\x1b[H\x1b[2J${text.replaceAll('\n', '\r\n')}`));
      stop = await Promise.race([quit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
    }
  } finally {
    if (raw) {
      input.off('data', onKey);
      input.setRawMode(false);
      input.pause();
    }
  }
  return 0;
}

/**
 * The run half of `corral run`: subscribe to the task's output, create (locally or through the fleet), start,
 * feed stdin or a terminal, wait, and with `rm` delete; Ctrl-C sends SIGTERM to the task, a second one
 * SIGKILL. Resolves with the task's exit status.
 */
import { ensureError } from '../../errors.ts';
import { subjects } from '../../bus/subjects.ts';
import { duration, type Parsed } from '../args.ts';
import { client } from '../client.ts';
import type { Io } from '../io.ts';
import { attachInput } from '../stdio.ts';

export async function runTask(
  p: Parsed,
  io: Io,
  id: string,
  body: Record<string, unknown>,
  o: { tty: boolean; stdin: boolean; rm: boolean },
): Promise<number> {
  const { tty, stdin } = o;
  const c = await client(p, io.env);
  try {
    // Through the fleet, the node is known only from the create's reply: subscribe to every node's io of this id.
    const ioNode = p.values.fleet ? '*' : c.node;
    const outs = (['stdout', 'stderr'] as const).map((fd) =>
      c.nc.subscribe(subjects.io(ioNode, id, fd), {
        callback: (e, m) => {
          if (!e) (fd === 'stdout' ? io.stdout : io.stderr)(m.data);
        },
      }),
    );
    let interrupted = 0;
    let node = c.node;
    const on = <T>(verb: Parameters<typeof c.call>[0], b: Record<string, unknown>, t?: number) =>
      c.callOn<T>(node, verb, b, t);
    const onSig = () => {
      interrupted++;
      void on('kill', { id, signal: interrupted > 1 ? 'SIGKILL' : 'SIGTERM' }).catch((e: unknown) => {
        const ce = ensureError(e);
        io.err(`corral: Ctrl-C: kill of ${id} failed: ${ce.code}: ${ce.message}`);
      });
    };
    process.on('SIGINT', onSig);
    let input: ReturnType<typeof attachInput> | undefined;
    try {
      const timeout = duration(p, 'timeout', 300_000);
      const created = p.values.fleet
        ? await c.fleetCreate(body, timeout)
        : await c.call<{ pid: number }>('create', body, timeout);
      if ('node' in created && typeof created.node === 'string') node = created.node;
      if (!p.values.json) io.err(`created ${id}${p.values.fleet ? ` on node ${node}` : ''} (pid ${created.pid})`);
      await on('start', { id });
      if (tty || stdin) input = attachInput(c.nc, { node, id, stdin, tty }, io, (s) => on('resize', { id, ...s }));
      const r = await on<{ exitStatus: number; exitedAt: number }>('wait', { id, timeoutMs: 0 }, 7 * 24 * 3600_000);
      await c.nc.flush();
      if (o.rm) await on('delete', { id }, 120_000);
      if (p.values.json) io.out(JSON.stringify({ id, node, pid: created.pid, ...r }));
      return r.exitStatus;
    } finally {
      input?.close();
      process.off('SIGINT', onSig);
      for (const s of outs) s.unsubscribe();
    }
  } finally {
    await c.close();
  }
}

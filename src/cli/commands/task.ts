/** The Task API commands: create, start, state, kill, wait, delete, pids, ps, run. */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { err } from '../../errors.ts';
import { decode } from '../../bus/codec.ts';
import { subjects } from '../../bus/subjects.ts';
import type { MountSpec } from '../../workers/protocol.ts';
import { duration, need, parse, type Parsed } from '../args.ts';
import { client, type Client } from '../client.ts';
import type { Io } from '../main.ts';

const CREATE_OPTS = {
  bundle: { type: 'string' }, rootfs: { type: 'string', multiple: true }, config: { type: 'string' }, terminal: { type: 'boolean' },
} as const;

/** `T:SRC[:OPTS]`: type, source, then comma-separated options (which may themselves hold colons). */
export function parseRootfs(v: string): MountSpec {
  const a = v.indexOf(':');
  const b = a < 0 ? -1 : v.indexOf(':', a + 1);
  if (a <= 0) throw err.invalid(`--rootfs ${JSON.stringify(v)}: expected TYPE:SOURCE[:OPTIONS]`);
  const type = v.slice(0, a);
  const source = b < 0 ? v.slice(a + 1) : v.slice(a + 1, b);
  if (!source) throw err.invalid(`--rootfs ${JSON.stringify(v)}: the source is empty`);
  return { type, source, options: b < 0 ? [] : v.slice(b + 1).split(',').filter(Boolean) };
}

function createBody(p: Parsed, id: string) {
  const bundle = p.values.bundle as string | undefined;
  if (!bundle) throw err.invalid('--bundle DIR is required');
  return {
    id,
    bundle: resolve(bundle),
    rootfs: ((p.values.rootfs as string[] | undefined) ?? []).map(parseRootfs),
    terminal: p.values.terminal === true,
    options: p.values.config ? { configPath: resolve(p.values.config as string) } : {},
  };
}

async function withClient<T>(p: Parsed, io: Io, f: (c: Client) => Promise<T>): Promise<T> {
  const c = await client(p, io.env);
  try { return await f(c); } finally { await c.close(); }
}

const show = (io: Io, p: Parsed, result: unknown, human: () => string) => io.out(p.values.json ? JSON.stringify(result) : human());

export const taskCommands: Record<string, { usage: string; run(argv: string[], io: Io): Promise<number> }> = {
  create: {
    usage: 'corral create ID --bundle DIR [--rootfs TYPE:SRC[:OPTS]]... [--config PATH] [--terminal]',
    async run(argv, io) {
      const p = parse(argv, CREATE_OPTS);
      const body = createBody(p, need(p, 0, 'task ID'));
      const r = await withClient(p, io, (c) => c.call<{ pid: number }>('create', body, duration(p.values.timeout as string, 300_000)));
      show(io, p, { id: body.id, ...r }, () => `created ${body.id} (pid ${r.pid})`);
      return 0;
    },
  },
  start: simple('start', (id, r) => `started ${id} (pid ${(r as { pid: number }).pid})`),
  delete: simple('delete', (id, r) => `deleted ${id} (exit status ${(r as { exitStatus: number }).exitStatus})`),
  pids: simple('pids', (_id, r) => (r as { pids: { pid: number }[] }).pids.map((x) => String(x.pid)).join('\n')),
  state: simple('state', (_id, r) => {
    const s = r as Record<string, unknown>;
    return `${s.id}\t${s.status}\t${s.state}\tpid=${s.pid}\texit=${s.exitStatus}${s.error ? `\terror=${(s.error as { message: string }).message}` : ''}`;
  }),
  kill: {
    usage: 'corral kill ID [--signal SIG] [--all]',
    async run(argv, io) {
      const p = parse(argv, { signal: { type: 'string' }, all: { type: 'boolean' } });
      const id = need(p, 0, 'task ID');
      await withClient(p, io, (c) => c.call('kill', { id, signal: p.values.signal ?? 'SIGTERM', all: p.values.all === true }));
      show(io, p, { id }, () => `signalled ${id}`);
      return 0;
    },
  },
  wait: {
    usage: 'corral wait ID [--timeout D]',
    async run(argv, io) {
      const p = parse(argv);
      const id = need(p, 0, 'task ID');
      const ms = duration(p.values.timeout as string, 24 * 3600_000);
      const r = await withClient(p, io, (c) => c.call<{ exitStatus: number }>('wait', { id, timeoutMs: ms }, ms + 5000));
      show(io, p, r, () => String(r.exitStatus));
      return 0;
    },
  },
  ps: {
    usage: 'corral ps',
    async run(argv, io) {
      const p = parse(argv);
      const r = await withClient(p, io, (c) => c.call<{ tasks: Record<string, unknown>[] }>('list', {}));
      show(io, p, r, () => ['ID\tSANDBOX\tSTATUS\tSTATE\tPID\tEXIT', ...r.tasks.map((t) => `${t.id}\t${t.sandboxId}\t${t.status}\t${t.state}\t${t.pid}\t${t.exitStatus}`)].join('\n'));
      return 0;
    },
  },
  run: {
    usage: 'corral run --bundle DIR [--rootfs TYPE:SRC[:OPTS]]... [--config PATH] [--id ID] [--rm]',
    async run(argv, io) {
      const p = parse(argv, { ...CREATE_OPTS, id: { type: 'string' }, rm: { type: 'boolean' } });
      const id = (p.values.id as string | undefined) ?? `run-${randomBytes(4).toString('hex')}`;
      const body = createBody(p, id);
      return withClient(p, io, async (c) => {
        const outs = (['stdout', 'stderr'] as const).map((fd) =>
          c.nc.subscribe(subjects.io(c.node, id, fd), { callback: (e, m) => { if (!e) (fd === 'stdout' ? io.stdout : io.stderr)(m.data); } }));
        let interrupted = 0;
        const onSig = () => { interrupted++; void c.call('kill', { id, signal: interrupted > 1 ? 'SIGKILL' : 'SIGTERM' }).catch(() => {}); };
        process.on('SIGINT', onSig);
        try {
          const created = await c.call<{ pid: number }>('create', body, duration(p.values.timeout as string, 300_000));
          if (!p.values.json) io.err(`created ${id} (pid ${created.pid})`);
          await c.call('start', { id });
          const r = await c.call<{ exitStatus: number; exitedAt: number }>('wait', { id, timeoutMs: 0 }, 7 * 24 * 3600_000);
          await c.nc.flush();
          if (p.values.rm) await c.call('delete', { id }, 120_000);
          if (p.values.json) io.out(JSON.stringify({ id, pid: created.pid, ...r }));
          return r.exitStatus;
        } finally {
          process.off('SIGINT', onSig);
          for (const s of outs) s.unsubscribe();
        }
      });
    },
  },
};

function simple(verb: 'start' | 'delete' | 'pids' | 'state', human: (id: string, r: unknown) => string) {
  return {
    usage: `corral ${verb} ID`,
    async run(argv: string[], io: Io) {
      const p = parse(argv);
      const id = need(p, 0, 'task ID');
      const r = await withClient(p, io, (c) => c.call(verb, { id }, verb === 'delete' ? 120_000 : 30_000));
      show(io, p, r, () => human(id, r));
      return 0;
    },
  };
}

void decode;

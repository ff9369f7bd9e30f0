/** Commands on a running task's processes: exec, pause, resume, stats, update. */
import { randomBytes } from 'node:crypto';
import { ensureError, err } from '../../errors.ts';
import { need, parse, type Parsed } from '../args.ts';
import type { Io } from '../io.ts';
import { attachInput, attachOutput } from '../stdio.ts';
import { onTaskNode, show, STDIO_OPTS, withClient } from './task.ts';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `--user UID[:GID]` (numeric, as the guest has no user database to ask). */
function userOf(v: unknown): { uid: number; gid: number } {
  if (v === undefined) return { uid: 0, gid: 0 };
  const m = typeof v === 'string' ? /^(\d+)(?::(\d+))?$/.exec(v) : null;
  if (!m) throw err.invalid(`--user ${JSON.stringify(v)}: expected UID or UID:GID (numbers)`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

function execBody(p: Parsed, id: string, execId: string, args: string[]) {
  const env = [DEFAULT_PATH, ...(p.values.tty ? ['TERM=xterm'] : []), ...((p.values.env as string[]) ?? [])];
  for (const e of env) if (!e.includes('=')) throw err.invalid(`--env ${JSON.stringify(e)}: expected KEY=VALUE`);
  return {
    id,
    execId,
    terminal: p.values.tty === true,
    stdin: p.values.stdin === true || p.values.tty === true,
    spec: {
      args,
      env,
      cwd: (p.values.cwd as string | undefined) ?? '/',
      user: userOf(p.values.user),
      terminal: p.values.tty === true,
    },
  };
}

export const processCommands: Record<string, { usage: string; run(argv: string[], io: Io): Promise<number> }> = {
  exec: {
    usage: 'corral exec ID [--exec-id EID] [-i] [-t] [--user UID[:GID]] [--cwd DIR] [--env K=V]... -- CMD [ARG...]',
    async run(argv, io) {
      const p = parse(argv, {
        ...STDIO_OPTS,
        'exec-id': { type: 'string' },
        user: { type: 'string' },
        cwd: { type: 'string' },
        env: { type: 'string', multiple: true },
      });
      const id = need(p, 0, 'task ID');
      const args = p.positionals.slice(1);
      if (!args.length) throw err.invalid('missing the command: corral exec ID [flags] -- CMD [ARG...]');
      const execId = (p.values['exec-id'] as string | undefined) ?? `exec-${randomBytes(6).toString('hex')}`;
      const tty = p.values.tty === true;
      const a = { node: '', id, execId, stdin: p.values.stdin === true || tty, tty };
      return withClient(p, io, async (c) => {
        [a.node] = await onTaskNode(c, p, io, id, async (node) => node);
        const call = <T = Record<string, unknown>>(
          v: 'exec' | 'start' | 'wait' | 'delete' | 'kill' | 'resize',
          b: Record<string, unknown>,
          t?: number,
        ) => c.callOn<T>(a.node, v, b, t);
        const out = attachOutput(c.nc, a, io);
        let input: ReturnType<typeof attachInput> | undefined;
        const onSig = () =>
          void call('kill', { id, execId, signal: 'SIGTERM' }).catch((e: unknown) => {
            io.err(`corral: Ctrl-C: kill of exec ${execId} failed: ${ensureError(e).message}`);
          });
        process.on('SIGINT', onSig);
        try {
          await call('exec', execBody(p, id, execId, args));
          try {
            await call('start', { id, execId });
            if (a.stdin || a.tty) input = attachInput(c.nc, a, io, (s) => call('resize', { id, execId, ...s }));
            const r = await call<{ exitStatus: number }>('wait', { id, execId, timeoutMs: 0 }, 7 * 24 * 3600_000);
            await c.nc.flush();
            if (p.values.json) io.out(JSON.stringify({ id, execId, ...r }));
            return r.exitStatus;
          } finally {
            await call('delete', { id, execId }).catch(() => undefined); // best effort: it may not have started
          }
        } finally {
          input?.close();
          process.off('SIGINT', onSig);
          out.close();
        }
      });
    },
  },
  pause: verb('pause', 'paused'),
  resume: verb('resume', 'resumed'),
  stats: {
    usage: 'corral stats ID [--json]',
    async run(argv, io) {
      const p = parse(argv);
      const id = need(p, 0, 'task ID');
      const [r, at] = await withClient(p, io, (c) =>
        onTaskNode(c, p, io, id, (node) => c.callOn<Stats>(node, 'stats', { id })),
      );
      show(io, p, { ...r, ...at }, () => statsText(id, r));
      return 0;
    },
  },
  update: {
    usage: 'corral update ID [--memory BYTES] [--cpu-quota US] [--cpu-period US] [--pids N]',
    async run(argv, io) {
      const p = parse(argv, {
        memory: { type: 'string' },
        'cpu-quota': { type: 'string' },
        'cpu-period': { type: 'string' },
        pids: { type: 'string' },
      });
      const id = need(p, 0, 'task ID');
      const n = (k: string) => {
        const v = p.values[k];
        if (v === undefined) return undefined;
        if (typeof v !== 'string' || !/^-?\d+$/.test(v)) throw err.invalid(`--${k} takes an integer`);
        return Number(v);
      };
      const resources = {
        ...(n('memory') !== undefined ? { memory: { limit: n('memory') } } : {}),
        ...(n('cpu-quota') !== undefined || n('cpu-period') !== undefined
          ? { cpu: { quota: n('cpu-quota'), period: n('cpu-period') } }
          : {}),
        ...(n('pids') !== undefined ? { pids: { limit: n('pids') } } : {}),
      };
      if (!Object.keys(resources).length)
        throw err.invalid('update needs --memory, --cpu-quota/--cpu-period or --pids');
      const [, at] = await withClient(p, io, (c) =>
        onTaskNode(c, p, io, id, (node) => c.callOn(node, 'update', { id, resources })),
      );
      show(io, p, { id, resources, ...at }, () => `updated ${id}`);
      return 0;
    },
  },
};

function verb(v: 'pause' | 'resume', done: string) {
  return {
    usage: `corral ${v} ID`,
    async run(argv: string[], io: Io) {
      const p = parse(argv);
      const id = need(p, 0, 'task ID');
      const [, at] = await withClient(p, io, (c) => onTaskNode(c, p, io, id, (node) => c.callOn(node, v, { id })));
      show(io, p, { id, ...at }, () => `${done} ${id}`);
      return 0;
    },
  };
}

interface Stats {
  cpu: { usageUsec: number; userUsec: number; systemUsec: number };
  memory: { usage: number; limit: number | null; oomKills: number };
  pids: { current: number; limit: number | null };
}
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
const sec = (us: number) => `${(us / 1e6).toFixed(3)} s`;
const statsText = (id: string, s: Stats) =>
  [
    `${id}`,
    `cpu\t${sec(s.cpu.usageUsec)} (user ${sec(s.cpu.userUsec)}, system ${sec(s.cpu.systemUsec)})`,
    `memory\t${mib(s.memory.usage)} of ${s.memory.limit === null ? 'no limit' : mib(s.memory.limit)}, ` +
      `${s.memory.oomKills} OOM kill(s)`,
    `pids\t${s.pids.current} of ${s.pids.limit ?? 'no limit'}`,
  ].join('\n');

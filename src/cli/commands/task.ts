/** The Task API commands: create, start, state, kill, wait, delete, pids, ps, run. */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { err } from '../../errors.ts';
import { decode } from '../../bus/codec.ts';
import type { MountSpec } from '../../domain/ops.ts';
import { duration, need, parse, type Parsed } from '../args.ts';
import { client, type Client } from '../client.ts';
import type { Io } from '../io.ts';
import { NET_OPTS, runNetwork } from '../net-run.ts';
import { runTask } from './run-task.ts';

/**
 * `-i`: the local stdin feeds the process; `-t`: a terminal in the guest, this one in raw mode, and the
 * local stdin feeding it (`-t` implies `-i`: a terminal nobody can type into is never what a person wants).
 */
export const STDIO_OPTS = {
  stdin: { type: 'boolean', short: 'i' },
  tty: { type: 'boolean', short: 't' },
} as const;
/** A create's `stdin` when the CLI feeds it over NATS (containerd puts a FIFO path there). */
const STDIN_MARK = 'nats:stdin';

const CREATE_OPTS = {
  bundle: { type: 'string' },
  rootfs: { type: 'string', multiple: true },
  config: { type: 'string' },
  terminal: { type: 'boolean' },
  fleet: { type: 'boolean' },
  label: { type: 'string', multiple: true },
  policy: { type: 'string' },
} as const;

/**
 * A fleet create carries the OCI spec inline (the chosen node writes the bundle) and rootfs entries
 * that must be valid on any node; `--label k=v` narrows the nodes, `--policy spread|binpack` overrides
 * the controller's.
 */
function fleetBody(p: Parsed, id: string) {
  const local = createBody(p, id);
  let spec: unknown;
  try {
    spec = JSON.parse(readFileSync(join(local.bundle, 'config.json'), 'utf8'));
  } catch (e) {
    throw err.invalid(`cannot read ${join(local.bundle, 'config.json')} for the inline spec: ${(e as Error).message}`);
  }
  const labels: Record<string, string> = {};
  for (const l of (p.values.label as string[] | undefined) ?? []) {
    const i = l.indexOf('=');
    if (i <= 0) throw err.invalid(`--label ${JSON.stringify(l)}: expected key=value`);
    labels[l.slice(0, i)] = l.slice(i + 1);
  }
  return {
    id,
    spec,
    rootfs: local.rootfs,
    terminal: local.terminal,
    options: local.options,
    labels,
    ...(p.values.policy ? { policy: p.values.policy } : {}),
  };
}

/** `T:SRC[:OPTS]`: type, source, then comma-separated options (which may themselves hold colons). */
export function parseRootfs(v: string): MountSpec {
  const a = v.indexOf(':');
  const b = a < 0 ? -1 : v.indexOf(':', a + 1);
  if (a <= 0) throw err.invalid(`--rootfs ${JSON.stringify(v)}: expected TYPE:SOURCE[:OPTIONS]`);
  const type = v.slice(0, a);
  const source = b < 0 ? v.slice(a + 1) : v.slice(a + 1, b);
  if (!source) throw err.invalid(`--rootfs ${JSON.stringify(v)}: the source is empty`);
  return {
    type,
    source,
    options:
      b < 0
        ? []
        : v
            .slice(b + 1)
            .split(',')
            .filter(Boolean),
  };
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

export async function withClient<T>(p: Parsed, io: Io, f: (c: Client) => Promise<T>): Promise<T> {
  const c = await client(p, io.env);
  try {
    return await f(c);
  } finally {
    await c.close();
  }
}

export const show = (io: Io, p: Parsed, result: unknown, human: () => string) =>
  io.out(p.values.json ? JSON.stringify(result) : human());

/**
 * `f` on the node that holds task `id` (Client.nodeOf). A node found across the fleet is said: on stderr,
 * and as `node` (the second value, to spread into the --json output); else the second value is `{}`.
 */
export async function onTaskNode<T>(
  c: Client,
  p: Parsed,
  io: Io,
  id: string,
  f: (node: string) => Promise<T>,
): Promise<[T, { node?: string }]> {
  const at = await c.nodeOf(id);
  if (at.located && !p.values.json) io.err(`${id} is on node ${at.node}`);
  return [await f(at.node), at.located ? { node: at.node } : {}];
}

export const taskCommands: Record<string, { usage: string; run(argv: string[], io: Io): Promise<number> }> = {
  create: {
    usage:
      'corral create ID --bundle DIR [--rootfs TYPE:SRC[:OPTS]]... [--config PATH] [--terminal] ' +
      '[--fleet [--label K=V]... [--policy spread|binpack]]',
    async run(argv, io) {
      const p = parse(argv, CREATE_OPTS);
      const id = need(p, 0, 'task ID');
      const timeout = duration(p, 'timeout', 300_000);
      if (p.values.fleet) {
        const r = await withClient(p, io, (c) => c.fleetCreate(fleetBody(p, id), timeout));
        show(io, p, r, () => `created ${id} on node ${r.node} (pid ${r.pid})`);
        return 0;
      }
      const body = createBody(p, id);
      const r = await withClient(p, io, (c) => c.call<{ pid: number }>('create', body, timeout));
      show(io, p, { id: body.id, ...r }, () => `created ${body.id} (pid ${r.pid})`);
      return 0;
    },
  },
  start: simple('start', (id, r) => `started ${id} (pid ${(r as { pid: number }).pid})`),
  delete: simple('delete', (id, r) => `deleted ${id} (exit status ${(r as { exitStatus: number }).exitStatus})`),
  pids: simple('pids', (_id, r) => (r as { pids: { pid: number }[] }).pids.map((x) => String(x.pid)).join('\n')),
  state: simple('state', (_id, r) => {
    const s = r as Record<string, unknown>;
    const error = s.error ? `\terror=${(s.error as { message: string }).message}` : '';
    return `${cell(s.id)}\t${cell(s.status)}\t${cell(s.state)}\tpid=${cell(s.pid)}\texit=${cell(s.exitStatus)}${error}`;
  }),
  kill: {
    usage: 'corral kill ID [--exec-id EID] [--signal SIG] [--all]',
    async run(argv, io) {
      const p = parse(argv, { signal: { type: 'string' }, all: { type: 'boolean' }, ...EXEC_ID });
      const id = need(p, 0, 'task ID');
      const body = { id, ...execIdOf(p), signal: p.values.signal ?? 'SIGTERM', all: p.values.all === true };
      const [, at] = await withClient(p, io, (c) => onTaskNode(c, p, io, id, (node) => c.callOn(node, 'kill', body)));
      const what = `signalled ${id}${body.execId ? ` exec ${body.execId}` : ''}`;
      show(io, p, { id, ...execIdOf(p), ...at }, () => what);
      return 0;
    },
  },
  wait: {
    usage: 'corral wait ID [--exec-id EID] [--timeout D]',
    async run(argv, io) {
      const p = parse(argv, EXEC_ID);
      const id = need(p, 0, 'task ID');
      const ms = duration(p, 'timeout', 24 * 3600_000);
      const [r, at] = await withClient(p, io, (c) =>
        onTaskNode(c, p, io, id, (node) =>
          c.callOn<{ exitStatus: number }>(node, 'wait', { id, ...execIdOf(p), timeoutMs: ms }, ms + 5000),
        ),
      );
      show(io, p, { ...r, ...at }, () => String(r.exitStatus));
      return 0;
    },
  },
  ps: {
    usage: 'corral ps',
    async run(argv, io) {
      const p = parse(argv);
      const r = await withClient(p, io, (c) => c.call<{ tasks: Record<string, unknown>[] }>('list', {}));
      show(io, p, r, () =>
        [
          'ID\tSANDBOX\tSTATUS\tSTATE\tPID\tEXIT',
          ...r.tasks.map((t) =>
            [t.id, t.sandboxId, t.status, t.state, t.pid, t.exitStatus].map((v) => cell(v)).join('\t'),
          ),
        ].join('\n'),
      );
      return 0;
    },
  },
  run: {
    usage:
      'corral run --bundle DIR [-i] [-t] [--rootfs TYPE:SRC[:OPTS]]... [--config PATH] [--id ID] [--rm] ' +
      '[--net bridge] [--fleet [--label K=V]... [--policy P]]',
    async run(argv, io) {
      const p = parse(argv, {
        ...CREATE_OPTS,
        ...STDIO_OPTS,
        ...NET_OPTS,
        id: { type: 'string' },
        rm: { type: 'boolean' },
      });
      const id = (p.values.id as string | undefined) ?? `run-${randomBytes(4).toString('hex')}`;
      const tty = p.values.tty === true;
      const stdin = p.values.stdin === true || tty;
      const local = p.values.fleet ? undefined : createBody(p, id);
      const net = await runNetwork(p, id, local, io); // --net bridge: the sandbox's namespace (implies --rm)
      const body = {
        ...(local ? { ...local, ...(net ? { bundle: net.bundle } : {}) } : fleetBody(p, id)),
        ...(tty ? { terminal: true } : {}),
        ...(stdin ? { stdin: STDIN_MARK } : {}),
      };
      try {
        return await runTask(p, io, id, body, { tty, stdin, rm: p.values.rm === true || net !== undefined });
      } finally {
        await net?.down();
      }
    },
  },
};

/** One table cell of a reply's field: as `${}` would print it (`undefined` included), objects as JSON. */
function cell(v: unknown): string {
  return v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v);
}

const EXEC_ID = { 'exec-id': { type: 'string' } } as const;
const execIdOf = (p: Parsed) => (typeof p.values['exec-id'] === 'string' ? { execId: p.values['exec-id'] } : {});

function simple(verb: 'start' | 'delete' | 'pids' | 'state', human: (id: string, r: unknown) => string) {
  const execs = verb !== 'pids';
  return {
    usage: `corral ${verb} ID${execs ? ' [--exec-id EID]' : ''}`,
    async run(argv: string[], io: Io) {
      const p = parse(argv, execs ? EXEC_ID : {});
      const id = need(p, 0, 'task ID');
      const body = { id, ...execIdOf(p) };
      const [r, at] = await withClient(p, io, (c) =>
        onTaskNode(c, p, io, id, (node) => c.callOn(node, verb, body, verb === 'delete' ? 120_000 : 30_000)),
      );
      show(io, p, { ...r, ...at }, () => human(id, r));
      return 0;
    },
  };
}

void decode;

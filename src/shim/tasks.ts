/**
 * What the shim keeps per process: only its stdio copy loops and whether its exit was drained. Every state
 * question goes to the agent, which holds the task (and survives a shim's death: containerd's `delete`
 * subcommand then cleans up through it). Events to containerd are derived here, in the order the calls
 * completed: create < start < exit < delete, an exec's added < started < exit; an exit only once the
 * process's output was written out (containerd-shim-v2.md §4, §5.3).
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { decode } from '../bus/codec.ts';
import { subjects } from '../bus/subjects.ts';
import { err } from '../errors.ts';
import type { Log } from '../log.ts';
import type { AgentClient, Exit } from './agent.ts';
import type { ShimEvent } from './event-types.ts';
import { groupOf } from './socket.ts';
import { ProcessIo, type StdioPaths } from './stdio.ts';

export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

interface Proc {
  io: ProcessIo;
  paths: StdioPaths;
  pid: number;
  /** Set at start: resolves once the process exited and its output was written out. */
  drained?: Promise<Exit>;
}

export class ShimTasks {
  private readonly procs = new Map<string, Proc>();
  private readonly oomSubs = new Map<string, Subscription>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly agent: AgentClient,
    private readonly emit: (e: ShimEvent) => void,
    private readonly log: Log,
  ) {}

  get size() {
    return this.procs.size;
  }

  private key = (id: string, execId?: string) => (execId ? `${id}/${execId}` : id);
  private get(id: string, execId?: string): Proc {
    const p = this.procs.get(this.key(id, execId));
    if (!p) throw err.notFound(`${execId ? `exec ${execId} of ` : ''}task ${id} is not served by this shim`);
    return p;
  }

  async create(r: { id: string; bundle: string; rootfs: Mount[]; configPath?: string } & StdioPaths) {
    if (this.procs.has(r.id)) throw err.exists(`task ${r.id} exists already`);
    const paths = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal };
    const io = new ProcessIo(this.nc, { node: this.agent.node, taskId: r.id }, paths, this.log);
    io.attachOutput();
    let pid: number;
    try {
      ({ pid } = await this.agent.create({
        id: r.id,
        bundle: r.bundle,
        rootfs: r.rootfs.map(({ type, source, options }) => ({ type, source, options })),
        ...paths,
        ...(r.configPath ? { options: { configPath: r.configPath } } : {}),
      }));
    } catch (e) {
      io.close();
      throw e;
    }
    this.procs.set(r.id, { io, paths, pid });
    this.emit({ topic: '/tasks/create', containerId: r.id, bundle: r.bundle, rootfs: r.rootfs, io: paths, pid });
    this.watchOom(r.id, groupOf(r.bundle, r.id));
    return pid;
  }

  async exec(r: { id: string; execId: string; spec: unknown } & StdioPaths) {
    this.get(r.id);
    if (this.procs.has(this.key(r.id, r.execId))) throw err.exists(`exec ${r.execId} exists already in ${r.id}`);
    const paths = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal };
    const io = new ProcessIo(this.nc, { node: this.agent.node, taskId: r.id, execId: r.execId }, paths, this.log);
    io.attachOutput();
    try {
      await this.agent.exec({ id: r.id, execId: r.execId, spec: r.spec, terminal: r.terminal, stdin: r.stdin !== '' });
    } catch (e) {
      io.close();
      throw e;
    }
    this.procs.set(this.key(r.id, r.execId), { io, paths, pid: 0 });
    this.emit({ topic: '/tasks/exec-added', containerId: r.id, execId: r.execId });
  }

  async start(id: string, execId?: string) {
    const p = this.get(id, execId);
    const { pid } = await this.agent.start(id, execId);
    p.pid = pid;
    p.io.attachStdin();
    this.emit(
      execId
        ? { topic: '/tasks/exec-started', containerId: id, execId, pid }
        : { topic: '/tasks/start', containerId: id, pid },
    );
    p.drained ??= this.agent.wait(id, execId).then(async (x) => {
      await p.io.finish();
      this.emit({ topic: '/tasks/exit', containerId: id, id: execId ?? id, pid, ...x });
      return x;
    });
    p.drained.catch((e: unknown) => this.log.warn({ err: e, id, execId }, 'waiting for the exit failed'));
    return pid;
  }

  /** The exit, once the output before it was written out (for a started process). */
  async wait(id: string, execId?: string): Promise<Exit> {
    const p = this.procs.get(this.key(id, execId));
    const x = await this.agent.wait(id, execId);
    if (p?.drained) await p.drained.catch(() => undefined);
    return x;
  }

  async delete(id: string, execId?: string) {
    const r = await this.agent.delete(id, execId);
    const drop = (k: string) => {
      this.procs.get(k)?.io.close();
      this.procs.delete(k);
    };
    drop(this.key(id, execId));
    if (!execId) {
      for (const k of [...this.procs.keys()]) if (k.startsWith(`${id}/`)) drop(k);
      this.oomSubs.get(id)?.unsubscribe();
      this.oomSubs.delete(id);
      this.emit({
        topic: '/tasks/delete',
        containerId: id,
        id,
        pid: r.pid,
        exitStatus: r.exitStatus,
        exitedAt: r.exitedAt,
      });
    }
    return r;
  }

  closeIO(id: string, execId?: string) {
    this.get(id, execId).io.closeStdin();
  }

  async pause(id: string) {
    await this.agent.pause(id);
    this.emit({ topic: '/tasks/paused', containerId: id });
  }

  async resume(id: string) {
    await this.agent.resume(id);
    this.emit({ topic: '/tasks/resumed', containerId: id });
  }

  pidOf(id: string) {
    return this.procs.get(id)?.pid ?? 0;
  }

  /**
   * The guest's OOM killer, as the agent records it (fact `oom` on its sandbox's subject), becomes containerd's
   * TaskOOM. The sandbox is the pod's (the group: socket.ts), read from the bundle as the agent reads it.
   */
  private watchOom(id: string, sandbox: string) {
    const sub = this.nc.subscribe(subjects.evt(this.agent.node, sandbox, 'oom'), {
      callback: (e, m) => {
        const rec = e ? undefined : (decode(m.data) as { taskId?: unknown });
        if (rec?.taskId === id) this.emit({ topic: '/tasks/oom', containerId: id });
      },
    });
    this.oomSubs.set(id, sub);
  }

  close() {
    for (const p of this.procs.values()) p.io.close();
    for (const s of this.oomSubs.values()) s.unsubscribe();
    this.procs.clear();
  }
}

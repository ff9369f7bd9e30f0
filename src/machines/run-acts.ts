/**
 * What a task does besides its init process's start and kills: its execs (containerd's Exec, then Start,
 * Kill, Delete and Wait on an exec id), pause and resume, terminal resizes, CloseIO and Update.
 *
 * Each of these is one worker op, an "act", run one at a time in `running.acting` through the `act`
 * effect; acts (and kills) that arrive while another is in flight queue up and are answered in turn,
 * exactly one reply per request. Exec records live in the context, so replay and recovery rebuild them
 * from the log as they rebuild everything else. An exec's exit comes as its own event (`execExit`) and
 * never touches the task's own exit.
 */
import { enqueueActions } from 'xstate';
import { toWireError, type WireError } from '../errors.ts';
import type { ExecRecord, RunAct } from '../domain/task.ts';
import { fact, fail, lifecycleSetup as L, precondition, reply, type LifecycleContext } from './lifecycle-setup.ts';

const noExec = (execId: string): WireError => ({
  code: 'NotFound',
  message: `exec ${execId} does not exist`,
  retryable: false,
});
/** Kata (§9.4) for an exec with no process: SIGKILL/SIGTERM succeed and do nothing; others are NotFound. */
const notRunning = (e: { rid: string; signal: number }) =>
  e.signal === 9 || e.signal === 15
    ? reply(e.rid, {})
    : fail(e.rid, { code: 'NotFound', message: 'process already finished', retryable: false });
const execs = (c: LifecycleContext): Record<string, ExecRecord> => c.execs ?? {};
const withExec = (c: LifecycleContext, execId: string, e: ExecRecord) => ({ execs: { ...execs(c), [execId]: e } });
/** An exec's answer to delete and wait: containerd's exit status, exit time and pid. */
export const execExitInfo = (c: LifecycleContext, e: ExecRecord) => ({
  exitStatus: e.exitStatus ?? 0,
  exitedAt: e.exitedAt ?? 0,
  pid: c.pid,
});

const queue = (c: LifecycleContext, rid: string, act: RunAct) => ({ acts: [...(c.acts ?? []), { rid, act }] });

/** Handlers of `running`: execs are added and queued, the other acts queued. */
export const runningActs = {
  exec: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'exec') return;
      if (execs(context)[event.execId]) {
        const m = `exec ${event.execId} already exists in task ${context.id}`;
        enqueue.emit(fail(event.rid, { code: 'AlreadyExists', message: m, retryable: false }));
        return;
      }
      const rec: ExecRecord = {
        process: event.process,
        status: 'created',
        guestPid: 0,
        exitStatus: null,
        exitedAt: null,
      };
      enqueue.assign(withExec(context, event.execId, rec));
      enqueue.emit(fact('execAdded', { execId: event.execId }));
      enqueue.emit(reply(event.rid, {}));
    }),
  },
  execStart: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'execStart') return;
      const e = execs(context)[event.execId];
      if (!e) enqueue.emit(fail(event.rid, noExec(event.execId)));
      else if (e.status !== 'created') enqueue.emit(fail(event.rid, precondition('start', `exec ${e.status}`)));
      else enqueue.assign(queue(context, event.rid, { op: 'execStart', execId: event.execId, process: e.process }));
    }),
  },
  execKill: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'execKill') return;
      const e = execs(context)[event.execId];
      if (!e) enqueue.emit(fail(event.rid, noExec(event.execId)));
      else if (e.status !== 'running') enqueue.emit(notRunning(event));
      else {
        const act: RunAct = { op: 'execSignal', execId: event.execId, signal: event.signal, all: event.all };
        enqueue.assign(queue(context, event.rid, act));
      }
    }),
  },
  pause: {
    actions: L.assign(({ context, event }) => queue(context, 'rid' in event ? event.rid : '', { op: 'pause' })),
  },
  resume: {
    actions: L.assign(({ context, event }) => queue(context, 'rid' in event ? event.rid : '', { op: 'resume' })),
  },
  resize: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'resize') return;
      const act: RunAct = { op: 'resize', execId: event.execId, rows: event.rows, cols: event.cols };
      enqueue.assign(queue(context, event.rid, act));
    }),
  },
  closeIO: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type === 'closeIO') enqueue.assign(queue(context, event.rid, { op: 'closeIO', execId: event.execId }));
    }),
  },
  update: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type === 'update') enqueue.assign(queue(context, event.rid, { op: 'update', limits: event.limits }));
    }),
  },
};

/** `running.acting`: the act at the head of the queue, through the `act` effect. */
export const actingState = L.createStateConfig({
  invoke: {
    id: 'act',
    src: 'act',
    input: ({ context }) => ({ id: context.id, plan: context.plan!, act: context.acts![0]!.act }),
    onDone: {
      target: 'idle',
      actions: enqueueActions(({ context, event, enqueue }) => {
        const { rid, act } = context.acts![0]!;
        enqueue.assign({ acts: context.acts!.slice(1) });
        if (act.op === 'execStart') {
          const e = execs(context)[act.execId]!;
          const guestPid = event.output?.guestPid ?? 0;
          // Its exit may have come in before this reply (then it stays stopped).
          enqueue.assign(
            withExec(context, act.execId, { ...e, guestPid, status: e.exitStatus === null ? 'running' : e.status }),
          );
          enqueue.emit(fact('execStarted', { execId: act.execId, pid: context.pid, guestPid }));
          enqueue.emit(reply(rid, { pid: context.pid }));
          return;
        }
        if (act.op === 'pause' || act.op === 'resume') {
          if (!!context.paused !== (act.op === 'pause'))
            enqueue.emit(fact(act.op === 'pause' ? 'paused' : 'resumed', {}));
          enqueue.assign({ paused: act.op === 'pause' });
        }
        enqueue.emit(reply(rid, {}));
      }),
    },
    onError: {
      target: 'idle',
      actions: enqueueActions(({ context, event, enqueue }) => {
        const { rid, act } = context.acts![0]!;
        enqueue.assign({ acts: context.acts!.slice(1) });
        if (act.op === 'execStart') {
          // As a failed start of the task itself: the exec ends (Wait returns 255), nothing runs.
          const e = execs(context)[act.execId]!;
          enqueue.assign(withExec(context, act.execId, { ...e, status: 'stopped', exitStatus: 255, exitedAt: 0 }));
        }
        enqueue.emit(fail(rid, toWireError(event.error)));
      }),
    },
  },
});

/** The act in flight and those queued, when the task's process ends first: each is refused. */
export const abandonedActs = (c: LifecycleContext) =>
  (c.acts ?? []).map((a) => fail(a.rid, precondition(a.act.op, 'stopped')));

/** Handlers every state has (lifecycle.ts puts them at the root): what does not need a running task. */
export const anyStateActs = {
  execKill: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'execKill') return;
      enqueue.emit(execs(context)[event.execId] ? notRunning(event) : fail(event.rid, noExec(event.execId)));
    }),
  },
  execDelete: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'execDelete') return;
      const e = execs(context)[event.execId];
      if (!e) return void enqueue.emit(fail(event.rid, noExec(event.execId)));
      if (e.status === 'running') return void enqueue.emit(fail(event.rid, precondition('delete', 'exec running')));
      const { [event.execId]: _gone, ...rest } = execs(context);
      enqueue.assign({ execs: rest });
      enqueue.emit(fact('execDeleted', { execId: event.execId, ...execExitInfo(context, e) }));
      enqueue.emit(reply(event.rid, execExitInfo(context, e)));
    }),
  },
  execExit: {
    actions: L.enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'execExit') return;
      const e = execs(context)[event.execId];
      if (!e || e.exitStatus !== null) return; // unknown, or a second report of the same exit
      const done = { ...e, status: 'stopped' as const, exitStatus: event.exitStatus, exitedAt: event.exitedAt };
      enqueue.assign(withExec(context, event.execId, done));
      enqueue.emit(fact('execExited', { execId: event.execId, ...execExitInfo(context, done) }));
    }),
  },
  oom: { actions: L.emit(() => fact('oom', {})) },
};

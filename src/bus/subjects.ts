/**
 * Every NATS subject Corral uses, built in one place (architecture.md, "The wire").
 * Tokens are validated so that a caller-supplied id can never add or remove a subject level.
 */
import { err } from '../errors.ts';
import { nodeName } from './node-name.ts';

export const PREFIX = 'corral.v1';
export const EVENTS_STREAM = 'CORRAL_EVENTS';

export const TASK_VERBS = [
  'create',
  'createInline',
  'start',
  'state',
  'kill',
  'wait',
  'delete',
  'pids',
  'pause',
  'resume',
  'exec',
  'resize',
  'closeIO',
  'update',
  'stats',
  'shutdown',
  'list',
] as const;
export type TaskVerb = (typeof TASK_VERBS)[number];
import type { WorkerKind } from '../domain/ops.ts';

const TOKEN = /^[A-Za-z0-9_~-]+$/;
/**
 * A subject token: no dots that would add levels, no wildcards, no whitespace. Task and sandbox ids
 * may hold dots (Kata's id rule allows them); in subjects a dot is written `~`, which ids cannot hold.
 * Node names have their own, stricter rule ({@link nodeName}, src/bus/node-name.ts).
 */
export function token(v: string, what = 'token'): string {
  const t = v.replaceAll('.', '~');
  if (!TOKEN.test(t) || t.length > 200) throw err.invalid(`invalid ${what} for a subject: ${JSON.stringify(v)}`);
  return t;
}

export const subjects = {
  task: (node: string, verb: TaskVerb | '*') => `${PREFIX}.node.${nodeName(node)}.task.${verb}`,
  fleetCreate: () => `${PREFIX}.fleet.task.create`,
  worker: (node: string, kind: WorkerKind, op: string) => `${PREFIX}.node.${nodeName(node)}.worker.${kind}.${op}`,
  /** Process stdio: `fd` is `stdout` or `stderr`. Core NATS, not stored. */
  io: (node: string, container: string, fd: 'stdout' | 'stderr' | '*') =>
    `${PREFIX}.node.${node === '*' ? '*' : nodeName(node)}.io.${token(container, 'container id')}.${fd}`,
  /**
   * An exec's stdio (`io.<container>.exec.<execId>.<fd>`), and the stdin data plane of either process kind
   * (served by the hypervisor worker, request/reply per chunk: `StdinChunk` in domain/ops.ts).
   */
  execIo: (node: string, container: string, execId: string, fd: 'stdout' | 'stderr' | '*') =>
    `${PREFIX}.node.${nodeName(node)}.io.${token(container, 'container id')}.exec.${token(execId, 'exec id')}.${fd}`,
  stdin: (node: string, container: string, execId?: string) =>
    `${PREFIX}.node.${nodeName(node)}.io.${token(container, 'container id')}` +
    `${execId === undefined ? '' : `.exec.${token(execId, 'exec id')}`}.stdin`,
  /** The stdin subjects of every process on a node, inits' then execs' (the hypervisor worker serves them). */
  stdinAll: (node: string): [string, string] => [
    `${PREFIX}.node.${nodeName(node)}.io.*.stdin`,
    `${PREFIX}.node.${nodeName(node)}.io.*.exec.*.stdin`,
  ],
  /**
   * Durable facts and write-ahead inputs (the CORRAL_EVENTS stream); as a filter `node`, `sandbox` may
   * be `*`, `kind` `>`.
   */
  evt: (node: string, sandbox: string, kind: string) => {
    const n = node === '*' ? '*' : nodeName(node);
    const s = sandbox === '*' ? '*' : token(sandbox, 'sandbox id');
    return `${PREFIX}.evt.${n}.${s}.${kind === '>' ? '>' : token(kind, 'event kind')}`;
  },
  evtAll: () => `${PREFIX}.evt.>`,
  /** Fleet: the controller forwards a placed create to the chosen node (body carries the OCI spec inline). */
  nodeCreateInline: (node: string) => `${PREFIX}.node.${nodeName(node)}.task.createInline`,
  /** Fleet: a sandbox of a node that was marked lost (`corral.v1.evt.<node>.<sandbox>.lost`, in CORRAL_EVENTS). */
  sandboxLost: (node: string, sandbox: string) =>
    `${PREFIX}.evt.${nodeName(node)}.${token(sandbox, 'sandbox id')}.lost`,
  /** Fleet: node events (`lost`), core NATS; `node` may be `*`, `kind` may be `*` or `>`. */
  fleetEvt: (node: string, kind: string) => {
    const n = node === '*' ? '*' : nodeName(node);
    return `${PREFIX}.fleet.evt.${n}.${kind === '*' || kind === '>' ? kind : token(kind, 'event kind')}`;
  },
};

/**
 * The kinds a record may share a message with others of its sandbox (src/bus/eventlog.ts writes such messages):
 * the journal's own records and the facts of a create and a start, which Corral reads through
 * eventlog-reader.ts only (no part subscribes to their subjects). A shared message's kind token is BATCH_KIND.
 */
export const SHARED_KINDS: ReadonlySet<string> = new Set(['input', 'state', 'stepDone', 'created', 'started']);
/** The kind token of a shared message's subject: reserved, no record has this kind. */
export const BATCH_KIND = 'batch';

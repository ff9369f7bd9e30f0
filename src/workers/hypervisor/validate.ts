/**
 * Decoded request maps → typed hypervisor-worker arguments, once, at the edge. Every rejection is
 * InvalidArgument naming the op and the field, what was expected and what arrived. Only the shapes are
 * checked here; the rules (ranges, ids, paths, frame sizes) are the driver's (`validateBootSpec`, `checkProcess`)
 * and the VMM user's (vmm-user.ts), so that they hold for callers of the driver too.
 */
import { err } from '../../errors.ts';
import { CGROUP_FILES } from './process-spec.ts';
import { parseNetwork } from './validate-net.ts';
import type {
  BootSpec,
  CgroupWrite,
  ConsoleSize,
  ContainerSetup,
  ExecSpec,
  GuestMount,
  OpArgs,
  ProcessPlan,
  ProcessRef,
  ProcessSpec,
  StdinChunk,
  VirtioFsSpec,
  VmmUser,
} from '../../domain/ops.ts';

type Req = Record<string, unknown>;

const typeName = (v: unknown) =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : v instanceof Uint8Array ? 'bytes' : typeof v;

function text(op: string, field: string, v: unknown, { allowEmpty = false } = {}): string {
  if (typeof v !== 'string') throw err.invalid(`${op}: ${field} must be a string, got ${typeName(v)}`);
  if (!allowEmpty && v.length === 0) throw err.invalid(`${op}: ${field} must not be empty`);
  return v;
}

function num(op: string, field: string, v: unknown): number {
  if (typeof v !== 'number') throw err.invalid(`${op}: ${field} must be a number, got ${typeName(v)}`);
  return v;
}

function flag(op: string, field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw err.invalid(`${op}: ${field} must be a boolean, got ${typeName(v)}`);
  return v;
}

function list<T>(op: string, field: string, v: unknown, item: (field: string, v: unknown) => T): T[] {
  if (!Array.isArray(v)) throw err.invalid(`${op}: ${field} must be a list, got ${typeName(v)}`);
  return v.map((x, i) => item(`${field}[${i}]`, x));
}

const isMap = (v: unknown): v is Req =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

function record(op: string, field: string, v: unknown): Req {
  if (!isMap(v)) throw err.invalid(`${op}: ${field} must be a map, got ${typeName(v)}`);
  return v;
}

function oneOf<T extends string>(op: string, field: string, v: unknown, values: readonly T[]): T {
  const found = values.find((x) => x === v);
  if (found === undefined)
    throw err.invalid(`${op}: ${field} must be one of ${values.join(', ')}, got ${JSON.stringify(v) ?? typeName(v)}`);
  return found;
}

function vmmUser(op: string, v: unknown): VmmUser {
  const u = record(op, 'user', v);
  return {
    user: text(op, 'user.user', u.user),
    uid: num(op, 'user.uid', u.uid),
    gid: num(op, 'user.gid', u.gid),
    groups: list(op, 'user.groups', u.groups, (f, g) => num(op, f, g)),
    runtimeDir: text(op, 'user.runtimeDir', u.runtimeDir),
  };
}

const ACCELS = ['auto', 'kvm', 'tcg'] as const;

function virtioFs(op: string, v: unknown): VirtioFsSpec {
  const m = record(op, 'virtioFs', v);
  return {
    daemon: text(op, 'virtioFs.daemon', m.daemon, { allowEmpty: true }),
    cache: text(op, 'virtioFs.cache', m.cache),
    extraArgs: list(op, 'virtioFs.extraArgs', m.extraArgs, (f, a) => text(op, f, a)),
    queueSize: num(op, 'virtioFs.queueSize', m.queueSize),
  };
}

export function parseBoot(req: Req): BootSpec {
  const op = 'boot';
  return {
    sandboxId: text(op, 'sandboxId', req.sandboxId),
    vcpus: num(op, 'vcpus', req.vcpus),
    memoryMiB: num(op, 'memoryMiB', req.memoryMiB),
    kernel: text(op, 'kernel', req.kernel),
    initrd: text(op, 'initrd', req.initrd),
    kernelParams: text(op, 'kernelParams', req.kernelParams, { allowEmpty: true }),
    machineType: text(op, 'machineType', req.machineType),
    accel: oneOf(op, 'accel', req.accel, ACCELS),
    sharedDir: text(op, 'sharedDir', req.sharedDir),
    msize9p: num(op, 'msize9p', req.msize9p),
    runDir: text(op, 'runDir', req.runDir),
    ...(req.user === undefined || req.user === null ? {} : { user: vmmUser(op, req.user) }),
    ...(req.virtioFs === undefined || req.virtioFs === null ? {} : { virtioFs: virtioFs(op, req.virtioFs) }),
    ...(req.network === undefined || req.network === null ? {} : { network: parseNetwork(req.network) }),
  };
}

const absent = (v: unknown) => v === undefined || v === null;
const optional = <T>(v: unknown, f: (v: unknown) => T): T | undefined => (absent(v) ? undefined : f(v));

function plan(op: string, req: Req): ProcessPlan {
  const strings = (field: string, v: unknown) => list(op, field, v, (f, s) => text(op, f, s, { allowEmpty: true }));
  return {
    args: strings('args', req.args),
    env: strings('env', req.env),
    // An empty or absent cwd is the container root.
    cwd: absent(req.cwd) ? '' : text(op, 'cwd', req.cwd, { allowEmpty: true }),
    uid: num(op, 'uid', req.uid),
    gid: num(op, 'gid', req.gid),
    additionalGids: list(op, 'additionalGids', req.additionalGids, (f, g) => num(op, f, g)),
    terminal: absent(req.terminal) ? false : flag(op, 'terminal', req.terminal),
  };
}

function size(op: string, field: string, v: unknown): ConsoleSize {
  const m = record(op, field, v);
  return { rows: num(op, `${field}.rows`, m.rows), cols: num(op, `${field}.cols`, m.cols) };
}

function guestMount(op: string, field: string, v: unknown): GuestMount {
  const m = record(op, field, v);
  return {
    source: text(op, `${field}.source`, m.source, { allowEmpty: true }),
    target: text(op, `${field}.target`, m.target),
    fstype: text(op, `${field}.fstype`, m.fstype, { allowEmpty: true }),
    flags: num(op, `${field}.flags`, m.flags),
    data: text(op, `${field}.data`, m.data, { allowEmpty: true }),
    ...(absent(m.file) ? {} : { file: flag(op, `${field}.file`, m.file) }),
  };
}

/** The files are the guest's allow-list; the values' rules are the driver's (`checkLimits`). */
function limits(op: string, v: unknown): CgroupWrite[] {
  return list(op, 'limits', v, (f, x) => {
    const m = record(op, f, x);
    return { file: oneOf(op, `${f}.file`, m.file, CGROUP_FILES), value: text(op, `${f}.value`, m.value) };
  });
}

function setup(op: string, req: Req): ContainerSetup {
  const s: ContainerSetup = {
    stdin: optional(req.stdin, (v) => flag(op, 'stdin', v)),
    mounts: optional(req.mounts, (v) => list(op, 'mounts', v, (f, m) => guestMount(op, f, m))),
    limits: optional(req.limits, (v) => limits(op, v)),
    hostname: optional(req.hostname, (v) => text(op, 'hostname', v, { allowEmpty: true })),
    rootReadonly: optional(req.rootReadonly, (v) => flag(op, 'rootReadonly', v)),
    consoleSize: optional(req.consoleSize, (v) => size(op, 'consoleSize', v)),
  };
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined));
}

export function parseProcess(req: Req): ProcessSpec {
  const op = 'startProcess';
  return {
    sandboxId: text(op, 'sandboxId', req.sandboxId),
    containerId: text(op, 'containerId', req.containerId),
    ...plan(op, req),
    ...setup(op, req),
  };
}

/** A process of a container, or with `execId` one of its execs. */
export function parseRef(op: string, req: Req): ProcessRef {
  return {
    sandboxId: text(op, 'sandboxId', req.sandboxId),
    containerId: text(op, 'containerId', req.containerId),
    ...(absent(req.execId) ? {} : { execId: text(op, 'execId', req.execId) }),
  };
}

export function parseExec(req: Req): ExecSpec {
  const op = 'exec';
  const { stdin, consoleSize } = setup(op, req);
  return {
    ...parseRef(op, req),
    execId: text(op, 'execId', req.execId),
    ...plan(op, req),
    ...(stdin === undefined ? {} : { stdin }),
    ...(consoleSize === undefined ? {} : { consoleSize }),
  };
}

export function parseResize(req: Req): ProcessRef & ConsoleSize {
  return { ...parseRef('resize', req), rows: num('resize', 'rows', req.rows), cols: num('resize', 'cols', req.cols) };
}

/** pause, resume: the sandbox, and optionally one container of it. */
export function parseFreeze(op: string, req: Req): { sandboxId: string; containerId?: string } {
  const containerId = optional(req.containerId, (v) => text(op, 'containerId', v));
  return { sandboxId: text(op, 'sandboxId', req.sandboxId), ...(containerId === undefined ? {} : { containerId }) };
}

export function parseUpdate(req: Req): OpArgs<'hypervisor', 'update'> {
  const op = 'update';
  return {
    sandboxId: text(op, 'sandboxId', req.sandboxId),
    containerId: text(op, 'containerId', req.containerId),
    limits: limits(op, req.limits),
  };
}

export function parseStats(req: Req): OpArgs<'hypervisor', 'stats'> {
  return {
    sandboxId: text('stats', 'sandboxId', req.sandboxId),
    containerId: text('stats', 'containerId', req.containerId),
  };
}

/** A stdin data-plane chunk (`StdinChunk`): a seq, and data, eof or both. */
export function parseStdinChunk(req: Req): StdinChunk {
  const op = 'stdin';
  const seq = num(op, 'seq', req.seq);
  if (!Number.isSafeInteger(seq) || seq < 0) throw err.invalid(`${op}: seq must be an integer >= 0, got ${seq}`);
  const data = req.data;
  if (!absent(data) && !(data instanceof Uint8Array))
    throw err.invalid(`${op}: data must be bytes, got ${typeName(data)}`);
  const eof = optional(req.eof, (v) => flag(op, 'eof', v));
  return { seq, ...(data instanceof Uint8Array ? { data } : {}), ...(eof ? { eof } : {}) };
}

export function parseStop(req: Req): OpArgs<'hypervisor', 'stop'> {
  return { sandboxId: text('stop', 'sandboxId', req.sandboxId) };
}

export function parseSignal(req: Req): OpArgs<'hypervisor', 'signal'> {
  const op = 'signal';
  return {
    ...parseRef(op, req),
    signal: num(op, 'signal', req.signal),
    ...(req.all === undefined ? {} : { all: flag(op, 'all', req.all) }),
  };
}

export function parseCreateUser(req: Req): OpArgs<'hypervisor', 'createUser'> {
  return { sandboxId: text('createUser', 'sandboxId', req.sandboxId) };
}

/** `removeUser`'s arguments: a user and its uid, or (its creation never confirmed) the sandbox it was made for. */
export type RemoveUserArgs =
  { user: string; uid: number; sandboxId?: undefined } | { sandboxId: string; user?: undefined };

/** With `user`: that user (and its uid); without: whatever user was made for `sandboxId`. */
export function parseRemoveUser(req: Req): RemoveUserArgs {
  const op = 'removeUser';
  if (req.user === undefined || req.user === null) return { sandboxId: text(op, 'sandboxId', req.sandboxId) };
  return { user: text(op, 'user', req.user), uid: num(op, 'uid', req.uid) };
}

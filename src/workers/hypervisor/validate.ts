/**
 * Decoded request maps → typed hypervisor-worker arguments, once, at the edge. Every rejection is
 * InvalidArgument naming the op and the field, what was expected and what arrived. Only the shapes are
 * checked here; the rules (ranges, ids, paths, frame sizes) are the driver's (`validateBootSpec`, `checkProcess`)
 * and the VMM user's (vmm-user.ts), so that they hold for callers of the driver too.
 */
import { err } from '../../errors.ts';
import type { BootSpec, OpArgs, ProcessSpec, VmmUser } from '../../domain/ops.ts';

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
  };
}

export function parseProcess(req: Req): ProcessSpec {
  const op = 'startProcess';
  const strings = (field: string, v: unknown) => list(op, field, v, (f, s) => text(op, f, s, { allowEmpty: true }));
  const terminal = req.terminal ?? false;
  if (typeof terminal !== 'boolean') throw err.invalid(`${op}: terminal must be a boolean, got ${typeName(terminal)}`);
  return {
    sandboxId: text(op, 'sandboxId', req.sandboxId),
    containerId: text(op, 'containerId', req.containerId),
    args: strings('args', req.args),
    env: strings('env', req.env),
    // An empty or absent cwd is the container root.
    cwd: req.cwd === undefined || req.cwd === null ? '' : text(op, 'cwd', req.cwd, { allowEmpty: true }),
    uid: num(op, 'uid', req.uid),
    gid: num(op, 'gid', req.gid),
    additionalGids: list(op, 'additionalGids', req.additionalGids, (f, g) => num(op, f, g)),
    terminal,
  };
}

export function parseStop(req: Req): OpArgs<'hypervisor', 'stop'> {
  return { sandboxId: text('stop', 'sandboxId', req.sandboxId) };
}

export function parseSignal(req: Req): OpArgs<'hypervisor', 'signal'> {
  const op = 'signal';
  return {
    sandboxId: text(op, 'sandboxId', req.sandboxId),
    containerId: text(op, 'containerId', req.containerId),
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

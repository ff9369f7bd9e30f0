/**
 * The checks the guest agent's protocol needs of a process (a container's init or an exec), and the
 * RUN and EXEC frames for it. InvalidArgument for what the guest could not take; ResourceExhausted for a
 * frame over MAX_FRAME.
 */
import { err } from '../../errors.ts';
import type { CgroupWrite, ExecSpec, ProcessPlan, ProcessSpec } from '../../domain/ops.ts';
import { encodeExec, encodeRun } from './agent-encode.ts';
import { MAX_CONTAINER_ID, MAX_EXEC_ID, MAX_FRAME } from './agent-frames.ts';

/** The cgroup files the guest writes (its allow-list). */
export const CGROUP_FILES: readonly CgroupWrite['file'][] = [
  'memory.max',
  'memory.high',
  'memory.swap.max',
  'cpu.max',
  'cpu.weight',
  'pids.max',
  'cpuset.cpus',
];
const u32 = (n: unknown) => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < 2 ** 32;
const badId = (id: string, max: number) =>
  !id || id.includes('/') || id === '.' || id === '..' || id.includes('\0') || Buffer.byteLength(id) > max;

function checkPlan(what: string, p: ProcessPlan & { consoleSize?: { rows: number; cols: number } }): void {
  if (!p.args.length) throw err.invalid(`${what}: args must not be empty`);
  if (p.additionalGids.length > 256) throw err.invalid(`${what}: more than 256 additionalGids`);
  if (![p.uid, p.gid, ...p.additionalGids].every(u32))
    throw err.invalid(`${what}: uid, gid and additionalGids must be integers >= 0`);
  const s = p.consoleSize;
  if (s && !(u32(s.rows) && u32(s.cols) && s.rows <= 0xffff && s.cols <= 0xffff))
    throw err.invalid(`${what}: consoleSize rows and cols must be integers 0..65535`);
}

/** The cgroup writes the guest allows (its allow-list), values on one line. */
export function checkLimits(what: string, limits: CgroupWrite[]): void {
  if (limits.length > 16) throw err.invalid(`${what}: more than 16 cgroup limits`);
  for (const l of limits) {
    if (!CGROUP_FILES.includes(l.file))
      throw err.invalid(`${what}: cgroup file ${JSON.stringify(l.file)} is not allowed`);
    if (typeof l.value !== 'string' || !l.value || /[\n\0]/.test(l.value) || l.value.length > 256)
      throw err.invalid(`${what}: cgroup ${l.file} value ${JSON.stringify(l.value)}`);
  }
}

export function checkProcess(spec: ProcessSpec): void {
  const cid = spec.containerId;
  if (badId(cid, MAX_CONTAINER_ID)) throw err.invalid(`containerId ${JSON.stringify(cid)}`);
  const what = `container ${cid}`;
  checkPlan(what, spec);
  if (spec.hostname !== undefined && (Buffer.byteLength(spec.hostname) > 64 || /[\0/\s]/.test(spec.hostname)))
    throw err.invalid(`${what}: hostname ${JSON.stringify(spec.hostname)}`);
  const mounts = spec.mounts ?? [];
  if (mounts.length > 64) throw err.invalid(`${what}: more than 64 mounts`);
  for (const m of mounts) {
    if (!m.target.startsWith('/') || m.target.split('/').includes('..') || m.target.includes('\0'))
      throw err.invalid(`${what}: mount target ${JSON.stringify(m.target)} must be absolute, without '..'`);
    if (!u32(m.flags)) throw err.invalid(`${what}: mount ${m.target}: flags must be a u32`);
  }
  checkLimits(what, spec.limits ?? []);
}

export function checkExec(spec: ExecSpec): void {
  if (badId(spec.containerId, MAX_CONTAINER_ID)) throw err.invalid(`containerId ${JSON.stringify(spec.containerId)}`);
  if (badId(spec.execId, MAX_EXEC_ID)) throw err.invalid(`execId ${JSON.stringify(spec.execId)}`);
  checkPlan(`exec ${spec.execId} of container ${spec.containerId}`, spec);
}

const sized = (frame: Buffer, what: string): Buffer => {
  if (frame.length - 4 > MAX_FRAME) throw err.exhausted(`${what}: args, env and mounts exceed ${MAX_FRAME} bytes`);
  return frame;
};

/** The RUN frame for a container's init; ResourceExhausted when it exceeds what the guest agent takes. */
export function runFrame(spec: ProcessSpec): Buffer {
  return sized(
    encodeRun({
      containerId: spec.containerId,
      args: spec.args,
      env: spec.env,
      cwd: spec.cwd || '/',
      uid: spec.uid,
      gid: spec.gid,
      additionalGids: spec.additionalGids,
      terminal: spec.terminal,
      stdin: spec.stdin ?? false,
      rows: spec.consoleSize?.rows ?? 0,
      cols: spec.consoleSize?.cols ?? 0,
      hostname: spec.hostname ?? '',
      rootReadonly: spec.rootReadonly ?? false,
      mounts: spec.mounts ?? [],
      limits: spec.limits ?? [],
    }),
    `container ${spec.containerId}`,
  );
}

export function execFrame(spec: ExecSpec): Buffer {
  return sized(
    encodeExec({
      containerId: spec.containerId,
      execId: spec.execId,
      args: spec.args,
      env: spec.env,
      cwd: spec.cwd || '/',
      uid: spec.uid,
      gid: spec.gid,
      additionalGids: spec.additionalGids,
      terminal: spec.terminal,
      stdin: spec.stdin ?? false,
      rows: spec.consoleSize?.rows ?? 0,
      cols: spec.consoleSize?.cols ?? 0,
    }),
    `exec ${spec.execId} of container ${spec.containerId}`,
  );
}

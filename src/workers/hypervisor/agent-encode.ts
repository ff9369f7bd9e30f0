/**
 * Encoders of the host→guest frames of the guest agent protocol (docs/guest-agent.md, version 3).
 */
import type { CgroupWrite, GuestMount } from '../../domain/ops.ts';
import { FRAME, keyOf, TTY_FLAG, type Key } from './agent-frames.ts';

export class Writer {
  private parts: Buffer[] = [];
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u8(v: number): this {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.u32(b.length).raw(b);
  }
  strs(v: string[]): this {
    this.u32(v.length);
    for (const s of v) this.str(s);
    return this;
  }
  u32s(v: number[]): this {
    this.u32(v.length);
    for (const n of v) this.u32(n);
    return this;
  }
  raw(b: Uint8Array): this {
    this.parts.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    return this;
  }
  frame(type: number): Buffer {
    const body = Buffer.concat(this.parts);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length + 1);
    head[4] = type;
    return Buffer.concat([head, body]);
  }
}

/** The process fields RUN and EXEC share. */
export interface ProcFields {
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  terminal: boolean;
  stdin: boolean;
  rows: number;
  cols: number;
}
export interface RunFrame extends ProcFields {
  containerId: string;
  hostname: string;
  /** The root made read-only after the mounts (RUN's flag 4). */
  rootReadonly?: boolean;
  mounts: GuestMount[];
  limits: CgroupWrite[];
}
export interface ExecFrame extends ProcFields {
  containerId: string;
  execId: string;
}

const proc = (w: Writer, p: ProcFields) =>
  w.strs(p.args).strs(p.env).str(p.cwd).u32(p.uid).u32(p.gid).u32s(p.additionalGids);
const tty = (w: Writer, p: ProcFields, more = 0) =>
  w
    .u8((p.terminal ? TTY_FLAG.terminal : 0) | (p.stdin ? TTY_FLAG.stdin : 0) | more)
    .u32(p.rows)
    .u32(p.cols);

export const encodePing = (token: number): Buffer => new Writer().u32(token).frame(FRAME.PING);
export const encodeList = (token: number): Buffer => new Writer().u32(token).frame(FRAME.LIST);
export const encodeAck = (k: Key): Buffer => new Writer().str(keyOf(k)).frame(FRAME.ACK);
/** `all`: every process of the container (init) or of the exec's process group, not only the main one. */
export const encodeSignal = (k: Key, signal: number, all = false): Buffer =>
  new Writer()
    .str(keyOf(k))
    .u32(signal)
    .u8(all ? 1 : 0)
    .frame(FRAME.SIGNAL);
export function encodeRun(r: RunFrame): Buffer {
  const w = tty(proc(new Writer().str(r.containerId), r), r, r.rootReadonly ? TTY_FLAG.rootReadonly : 0)
    .str(r.hostname)
    .u32(r.mounts.length);
  for (const m of r.mounts)
    w.str(m.source)
      .str(m.target)
      .str(m.fstype)
      .u32(m.flags)
      .str(m.data)
      .u8(m.file ? 1 : 0);
  w.u32(r.limits.length);
  for (const l of r.limits) w.str(l.file).str(l.value);
  return w.frame(FRAME.RUN);
}
export const encodeExec = (e: ExecFrame): Buffer =>
  tty(proc(new Writer().str(e.containerId).str(e.execId), e), e).frame(FRAME.EXEC);
export const encodeStdin = (k: Key, data: Uint8Array): Buffer =>
  new Writer().str(keyOf(k)).u32(data.byteLength).raw(data).frame(FRAME.STDIN);
export const encodeCloseStdin = (k: Key): Buffer => new Writer().str(keyOf(k)).frame(FRAME.CLOSE_STDIN);
export const encodeResize = (k: Key, rows: number, cols: number): Buffer =>
  new Writer().str(keyOf(k)).u32(rows).u32(cols).frame(FRAME.RESIZE);
export function encodeCtl(token: number, op: number, containerId: string, files: CgroupWrite[] = []): Buffer {
  const w = new Writer().u32(token).u8(op).str(containerId).u32(files.length);
  for (const f of files) w.str(f.file).str(f.value);
  return w.frame(FRAME.CTL);
}

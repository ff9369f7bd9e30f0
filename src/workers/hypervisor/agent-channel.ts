/**
 * The host side of the guest agent protocol (docs/guest-agent.md): length-prefixed binary frames over
 * the unix socket QEMU exposes for the `corral.agent` virtio-serial port.
 *
 * Frame: u32 BE length (of type + payload), u8 type, payload. Strings are u32 BE length + UTF-8 bytes,
 * string lists are u32 BE count + strings, integers are u32 BE.
 *
 * A host that re-attaches to a running guest (after a worker restart) may start reading in the middle of
 * a frame: it connects in resync mode, sends LIST with a random token, and skips whatever precedes the
 * guest's STATE frame for that token unless it splits into whole frames.
 */
import type { ProcessSpec } from '../../domain/ops.ts';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { connectUnix, type ConnectOptions } from './unix-socket.ts';

export const FRAME = {
  PING: 1,
  RUN: 2,
  SIGNAL: 3,
  LIST: 4,
  ACK: 5,
  READY: 0x81,
  STARTED: 0x82,
  OUTPUT: 0x83,
  EXIT: 0x84,
  ERROR: 0x85,
  STATE: 0x86,
} as const;
/** The agent rejects host→guest frames larger than this. */
export const MAX_FRAME = 1 << 20;
/** First payload word of STATE ("CORR"); with the token after it, what a re-attaching host scans for. */
export const STATE_MAGIC = 0x434f5252;
/** A resync that has not found its STATE within this many bytes gives up (closes the channel). */
const MAX_RESYNC_BYTES = 64 << 20;

/** A container the guest still knows (STATE): running, or exited with an EXIT the host has not ACKed. */
export interface GuestContainer {
  containerId: string;
  pid: number;
  exited: boolean;
  status: number;
}

/** What the guest says. `status` follows the shell: exit code, or 128 + signal number. */
export type AgentMsg =
  | { type: 'ready'; token: number; version: number }
  | { type: 'started'; containerId: string; pid: number }
  | { type: 'output'; containerId: string; fd: 1 | 2; data: Uint8Array }
  | { type: 'exit'; containerId: string; status: number }
  | { type: 'error'; containerId: string; errno: number; message: string }
  | { type: 'state'; token: number; containers: GuestContainer[] };

/** What a RUN frame carries: the process spec without what the guest does not need. */
export type RunFrame = Omit<ProcessSpec, 'sandboxId' | 'terminal'>;

class Writer {
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
  raw(b: Buffer): this {
    this.parts.push(b);
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

export const encodePing = (token: number): Buffer => new Writer().u32(token).frame(FRAME.PING);
export const encodeList = (token: number): Buffer => new Writer().u32(token).frame(FRAME.LIST);
export const encodeAck = (containerId: string): Buffer => new Writer().str(containerId).frame(FRAME.ACK);
/** `all`: every process of the container (its process group), not only its main process. */
export const encodeSignal = (containerId: string, signal: number, all = false): Buffer =>
  new Writer()
    .str(containerId)
    .u32(signal)
    .u8(all ? 1 : 0)
    .frame(FRAME.SIGNAL);
export const encodeRun = (r: RunFrame): Buffer =>
  new Writer()
    .str(r.containerId)
    .strs(r.args)
    .strs(r.env)
    .str(r.cwd)
    .u32(r.uid)
    .u32(r.gid)
    .u32s(r.additionalGids)
    .frame(FRAME.RUN);

class Reader {
  private at = 0;
  constructor(private b: Buffer) {}
  u8(): number {
    return this.b.readUInt8(this.at++);
  }
  u32(): number {
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  i32(): number {
    const v = this.b.readInt32BE(this.at);
    this.at += 4;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    if (this.at + n > this.b.length) throw new RangeError('short frame');
    const v = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  str(): string {
    return this.bytes().toString('utf8');
  }
}

/** Decode one guest→host frame body (type byte first). Unknown types → null. Throws on a short frame. */
export function decodeFrame(body: Buffer): AgentMsg | null {
  const r = new Reader(body);
  switch (r.u8()) {
    case FRAME.READY:
      return { type: 'ready', token: r.u32(), version: r.u32() };
    case FRAME.STARTED:
      return { type: 'started', containerId: r.str(), pid: r.u32() };
    case FRAME.OUTPUT: {
      const containerId = r.str();
      const fd = r.u8() === 2 ? 2 : 1;
      return { type: 'output', containerId, fd, data: new Uint8Array(r.bytes()) };
    }
    case FRAME.EXIT:
      return { type: 'exit', containerId: r.str(), status: r.i32() };
    case FRAME.ERROR:
      return { type: 'error', containerId: r.str(), errno: r.u32(), message: r.str() };
    case FRAME.STATE: {
      if (r.u32() !== STATE_MAGIC) return null;
      const token = r.u32();
      const n = r.u32();
      if (n > 4096) throw new RangeError('STATE lists too many containers');
      const containers: GuestContainer[] = [];
      for (let i = 0; i < n; i++)
        containers.push({ containerId: r.str(), pid: r.u32(), exited: r.u32() !== 0, status: r.i32() });
      return { type: 'state', token, containers };
    }
    default:
      return null;
  }
}

/** The bytes a STATE frame for `token` carries right after its length: type, magic, token. */
export function statePattern(token: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = FRAME.STATE;
  b.writeUInt32BE(STATE_MAGIC, 1);
  b.writeUInt32BE(token >>> 0, 5);
  return b;
}

/** Splits a byte stream into frame bodies. */
export class FrameSplitter {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of an incomplete frame held back. */
  get buffered(): number {
    return this.buf.length;
  }
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + len) break;
      out.push(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }
}

/** What a resync skipped before the STATE frame: `discarded` bytes that were not whole frames, else `frames` kept. */
export interface ResyncInfo {
  discarded: number;
  frames: number;
}

const decodeSafe = (body: Buffer): AgentMsg | null => {
  try {
    return decodeFrame(body);
  } catch {
    return null;
  }
};

/**
 * A connected agent channel. Emits `msg` for each guest frame and `close` once. In resync mode it first
 * looks for the STATE frame answering LIST(token): what came before is emitted as frames when it splits
 * into whole, known frames (then `resync` says how many), and dropped otherwise (`resync` says how many bytes).
 */
export class AgentChannel extends EventEmitter<{ msg: [AgentMsg]; close: []; resync: [ResyncInfo] }> {
  private split = new FrameSplitter();
  private scan?: { pattern: Buffer; buf: Buffer; from: number };
  private constructor(
    private sock: Socket,
    resyncToken?: number,
  ) {
    super();
    if (resyncToken !== undefined) this.scan = { pattern: statePattern(resyncToken), buf: Buffer.alloc(0), from: 4 };
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.emit('close'));
  }

  /** Connect; with `resyncToken`, the caller sends LIST with that token and the channel skips to its STATE. */
  static async connect(path: string, o: ConnectOptions, resyncToken?: number): Promise<AgentChannel> {
    return new AgentChannel(await connectUnix(path, o), resyncToken);
  }

  private onData(d: Buffer): void {
    const s = this.scan;
    if (s) {
      s.buf = s.buf.length ? Buffer.concat([s.buf, d]) : d;
      const at = s.buf.indexOf(s.pattern, s.from);
      if (at < 0) {
        s.from = Math.max(4, s.buf.length - s.pattern.length + 1);
        if (s.buf.length > MAX_RESYNC_BYTES) this.sock.destroy();
        return;
      }
      this.scan = undefined;
      const pre = s.buf.subarray(0, at - 4);
      const split = new FrameSplitter();
      const msgs = split.push(pre).map(decodeSafe);
      const whole = split.buffered === 0 && msgs.every((m) => m !== null);
      this.emit('resync', whole ? { discarded: 0, frames: msgs.length } : { discarded: pre.length, frames: 0 });
      if (whole) for (const m of msgs) this.emit('msg', m);
      d = s.buf.subarray(at - 4);
    }
    for (const body of this.split.push(d)) {
      const m = decodeSafe(body); // a malformed frame is dropped
      if (m) this.emit('msg', m);
    }
  }

  get isClosed(): boolean {
    return this.sock.destroyed;
  }

  /** Queue a frame; never blocks (Node buffers what the socket cannot take yet). False when closed. */
  send(frame: Buffer): boolean {
    if (this.sock.destroyed) return false;
    this.sock.write(frame);
    return true;
  }

  close(): void {
    this.sock.destroy();
  }
}

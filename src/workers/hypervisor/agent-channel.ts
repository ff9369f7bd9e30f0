/**
 * The host side of the guest agent protocol (docs/guest-agent.md): length-prefixed binary frames over
 * the unix socket QEMU exposes for the `corral.agent` virtio-serial port.
 *
 * Frame: u32 BE length (of type + payload), u8 type, payload. Strings are u32 BE length + UTF-8 bytes,
 * string lists are u32 BE count + strings, integers are u32 BE.
 */
import type { ProcessSpec } from '../protocol.ts';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { connectUnix, type ConnectOptions } from './unix-socket.ts';

export const FRAME = { PING: 1, RUN: 2, SIGNAL: 3, READY: 0x81, STARTED: 0x82, OUTPUT: 0x83, EXIT: 0x84, ERROR: 0x85 } as const;
/** The agent rejects host→guest frames larger than this. */
export const MAX_FRAME = 1 << 20;

/** What the guest says. `status` follows the shell: exit code, or 128 + signal number. */
export type AgentMsg =
  | { type: 'ready'; token: number; version: number }
  | { type: 'started'; containerId: string; pid: number }
  | { type: 'output'; containerId: string; fd: 1 | 2; data: Uint8Array }
  | { type: 'exit'; containerId: string; status: number }
  | { type: 'error'; containerId: string; errno: number; message: string };

/** What a RUN frame carries: the process spec without what the guest does not need. */
export type RunFrame = Omit<ProcessSpec, 'sandboxId' | 'terminal'>;

class Writer {
  private parts: Buffer[] = [];
  u32(v: number): this { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); this.parts.push(b); return this; }
  str(s: string): this { const b = Buffer.from(s, 'utf8'); return this.u32(b.length).raw(b); }
  strs(v: string[]): this { this.u32(v.length); for (const s of v) this.str(s); return this; }
  u32s(v: number[]): this { this.u32(v.length); for (const n of v) this.u32(n); return this; }
  raw(b: Buffer): this { this.parts.push(b); return this; }
  frame(type: number): Buffer {
    const body = Buffer.concat(this.parts);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length + 1);
    head[4] = type;
    return Buffer.concat([head, body]);
  }
}

export const encodePing = (token: number): Buffer => new Writer().u32(token).frame(FRAME.PING);
export const encodeSignal = (containerId: string, signal: number): Buffer => new Writer().str(containerId).u32(signal).frame(FRAME.SIGNAL);
export const encodeRun = (r: RunFrame): Buffer =>
  new Writer().str(r.containerId).strs(r.args).strs(r.env).str(r.cwd).u32(r.uid).u32(r.gid).u32s(r.additionalGids).frame(FRAME.RUN);

class Reader {
  private at = 0;
  constructor(private b: Buffer) {}
  u8(): number { return this.b.readUInt8(this.at++); }
  u32(): number { const v = this.b.readUInt32BE(this.at); this.at += 4; return v; }
  i32(): number { const v = this.b.readInt32BE(this.at); this.at += 4; return v; }
  bytes(): Buffer {
    const n = this.u32();
    if (this.at + n > this.b.length) throw new RangeError('short frame');
    const v = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  str(): string { return this.bytes().toString('utf8'); }
}

/** Decode one guest→host frame body (type byte first). Unknown types → null. Throws on a short frame. */
export function decodeFrame(body: Buffer): AgentMsg | null {
  const r = new Reader(body);
  switch (r.u8()) {
    case FRAME.READY: return { type: 'ready', token: r.u32(), version: r.u32() };
    case FRAME.STARTED: return { type: 'started', containerId: r.str(), pid: r.u32() };
    case FRAME.OUTPUT: {
      const containerId = r.str();
      const fd = r.u8() === 2 ? 2 : 1;
      return { type: 'output', containerId, fd, data: new Uint8Array(r.bytes()) };
    }
    case FRAME.EXIT: return { type: 'exit', containerId: r.str(), status: r.i32() };
    case FRAME.ERROR: return { type: 'error', containerId: r.str(), errno: r.u32(), message: r.str() };
    default: return null;
  }
}

/** Splits a byte stream into frame bodies. */
export class FrameSplitter {
  private buf: Buffer = Buffer.alloc(0);
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

/** A connected agent channel. Emits `msg` for each guest frame and `close` once. */
export class AgentChannel extends EventEmitter<{ msg: [AgentMsg]; close: [] }> {
  private split = new FrameSplitter();
  private constructor(private sock: Socket) {
    super();
    sock.on('data', (d: Buffer) => {
      for (const body of this.split.push(d)) {
        let m: AgentMsg | null = null;
        try { m = decodeFrame(body); } catch { /* a malformed frame is dropped */ }
        if (m) this.emit('msg', m);
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.emit('close'));
  }

  static async connect(path: string, o: ConnectOptions): Promise<AgentChannel> {
    return new AgentChannel(await connectUnix(path, o));
  }

  get isClosed(): boolean { return this.sock.destroyed; }

  /** Queue a frame; never blocks (Node buffers what the socket cannot take yet). False when closed. */
  send(frame: Buffer): boolean {
    if (this.sock.destroyed) return false;
    this.sock.write(frame);
    return true;
  }

  close(): void { this.sock.destroy(); }
}

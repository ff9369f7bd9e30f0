/**
 * The guest agent protocol's frames (docs/guest-agent.md, version 3): encoders for what the host sends,
 * and a validating decoder for what the guest sends. Frame: u32 BE length (of type + payload), u8 type,
 * payload. Strings are u32 BE length + UTF-8 bytes, string lists u32 BE count + strings, integers u32 BE.
 *
 * A guest→host frame is decoded strictly: every length within the frame, counts bounded, process keys of
 * the shape `containerId` or `containerId/execId`, fds 1 or 2, nothing left over. A frame that fails is a
 * {@link FrameError}; the channel drops and counts it.
 */

export const FRAME = {
  PING: 1,
  RUN: 2,
  SIGNAL: 3,
  LIST: 4,
  ACK: 5,
  EXEC: 6,
  STDIN: 7,
  CLOSE_STDIN: 8,
  RESIZE: 9,
  CTL: 0x0a,
  READY: 0x81,
  STARTED: 0x82,
  OUTPUT: 0x83,
  EXIT: 0x84,
  ERROR: 0x85,
  STATE: 0x86,
  WINDOW: 0x87,
  RESULT: 0x88,
  OOM: 0x89,
} as const;
/** The agent rejects host→guest frames larger than this. */
export const MAX_FRAME = 1 << 20;
/** First payload word of STATE ("CORR"); with the token after it, what a re-attaching host scans for. */
export const STATE_MAGIC = 0x434f5252;
/** Stdin bytes the host may have sent to one process and not had credited back by WINDOW. */
export const STDIN_WINDOW = 256 << 10;
/** Largest STDIN payload. */
export const STDIN_CHUNK = 64 << 10;
/** Largest OUTPUT payload the agent sends. */
export const OUTPUT_CHUNK = 32 << 10;
export const MAX_CONTAINER_ID = 255;
export const MAX_EXEC_ID = 128;
export const CTL_OP = { freeze: 1, thaw: 2, update: 3, stats: 4 } as const;
export const TTY_FLAG = { terminal: 1, stdin: 2, rootReadonly: 4 } as const;

/** A process in the guest: a container's init (no execId) or one of its execs. */
export interface Key {
  containerId: string;
  execId?: string;
}
export const keyOf = (k: Key): string => (k.execId === undefined ? k.containerId : `${k.containerId}/${k.execId}`);

/** A process the guest still knows (STATE): running, or exited with an EXIT the host has not ACKed. */
export interface GuestContainer extends Key {
  pid: number;
  exited: boolean;
  status: number;
}

/** What the guest says. `status` follows the shell: exit code, or 128 + signal number. */
export type AgentMsg =
  | { type: 'ready'; token: number; version: number }
  | ({ type: 'started'; pid: number } & Key)
  | ({ type: 'output'; fd: 1 | 2; data: Uint8Array } & Key)
  | ({ type: 'exit'; status: number } & Key)
  | ({ type: 'error'; errno: number; message: string } & Key)
  | { type: 'state'; token: number; containers: GuestContainer[] }
  | ({ type: 'window'; bytes: number } & Key)
  | { type: 'result'; token: number; errno: number; message: string; files: Record<string, string> }
  | { type: 'oom'; containerId: string };

/** A malformed guest→host frame. */
export class FrameError extends Error {}

class Reader {
  private at = 0;
  constructor(private b: Buffer) {}
  private need(n: number): void {
    if (this.at + n > this.b.length) throw new FrameError(`short frame: ${n} bytes wanted at ${this.at}`);
  }
  u8(): number {
    this.need(1);
    return this.b.readUInt8(this.at++);
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  bytes(max = Infinity): Buffer {
    const n = this.u32();
    if (n > max) throw new FrameError(`a field of ${n} bytes (at most ${max})`);
    this.need(n);
    const v = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  str(max = 64 << 10): string {
    const b = this.bytes(max);
    if (b.includes(0)) throw new FrameError('a string with a NUL byte');
    return b.toString('utf8');
  }
  key(): Key {
    const k = this.str(MAX_CONTAINER_ID + 1 + MAX_EXEC_ID);
    const parts = k.split('/');
    const [containerId, execId] = parts;
    if (parts.length > 2 || !containerId || execId === '' || Buffer.byteLength(containerId) > MAX_CONTAINER_ID)
      throw new FrameError(`bad process key ${JSON.stringify(k)}`);
    if (execId !== undefined && Buffer.byteLength(execId) > MAX_EXEC_ID)
      throw new FrameError(`exec id of ${JSON.stringify(k)} too long`);
    return execId === undefined ? { containerId } : { containerId, execId };
  }
  status(): number {
    const s = this.u32();
    if (s > 0xffff) throw new FrameError(`exit status ${s}`);
    return s;
  }
  count(max: number, minBytesEach: number): number {
    const n = this.u32();
    if (n > max || n * minBytesEach > this.b.length - this.at) throw new FrameError(`a count of ${n} (at most ${max})`);
    return n;
  }
  end(): void {
    if (this.at !== this.b.length) throw new FrameError(`${this.b.length - this.at} bytes left over`);
  }
}

function decodeBody(r: Reader, type: number): AgentMsg | null {
  switch (type) {
    case FRAME.READY:
      return { type: 'ready', token: r.u32(), version: r.u32() };
    case FRAME.STARTED:
      return { type: 'started', ...r.key(), pid: r.u32() };
    case FRAME.OUTPUT: {
      const k = r.key();
      const fd = r.u8();
      if (fd !== 1 && fd !== 2) throw new FrameError(`OUTPUT on fd ${fd}`);
      return { type: 'output', ...k, fd, data: new Uint8Array(r.bytes(OUTPUT_CHUNK)) };
    }
    case FRAME.EXIT:
      return { type: 'exit', ...r.key(), status: r.status() };
    case FRAME.ERROR: {
      const k = r.key();
      const errno = r.u32();
      if (errno > 4095) throw new FrameError(`errno ${errno}`);
      return { type: 'error', ...k, errno, message: r.str(4096) };
    }
    case FRAME.STATE: {
      if (r.u32() !== STATE_MAGIC) throw new FrameError('STATE without its magic');
      const token = r.u32();
      const containers: GuestContainer[] = [];
      for (let i = r.count(4096, 17); i > 0; i--) {
        const k = r.key();
        const pid = r.u32();
        const exited = r.u32();
        if (exited > 1) throw new FrameError(`STATE exited flag ${exited}`);
        containers.push({ ...k, pid, exited: exited === 1, status: r.status() });
      }
      return { type: 'state', token, containers };
    }
    case FRAME.WINDOW: {
      const k = r.key();
      const bytes = r.u32();
      if (bytes > 2 * STDIN_WINDOW) throw new FrameError(`WINDOW of ${bytes} bytes`);
      return { type: 'window', ...k, bytes };
    }
    case FRAME.RESULT: {
      const token = r.u32();
      const errno = r.u32();
      if (errno > 4095) throw new FrameError(`errno ${errno}`);
      const message = r.str(4096);
      const files: Record<string, string> = {};
      for (let i = r.count(64, 8); i > 0; i--) {
        const name = r.str(64);
        if (!/^[a-z]+\.[a-z._]+$/.test(name)) throw new FrameError(`RESULT file name ${JSON.stringify(name)}`);
        files[name] = r.str(64 << 10);
      }
      return { type: 'result', token, errno, message, files };
    }
    case FRAME.OOM: {
      const k = r.key();
      if (k.execId !== undefined) throw new FrameError('OOM names an exec');
      return { type: 'oom', containerId: k.containerId };
    }
    default:
      return null;
  }
}

/**
 * Decode one guest→host frame body (type byte first). Unknown types → null (a newer agent's frame: ignored).
 * Throws a {@link FrameError} on a malformed frame, never anything else.
 */
export function decodeFrame(body: Buffer): AgentMsg | null {
  const r = new Reader(body);
  const m = decodeBody(r, r.u8());
  if (m) r.end();
  return m;
}

/** The bytes a STATE frame for `token` carries right after its length: type, magic, token. */
export function statePattern(token: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = FRAME.STATE;
  b.writeUInt32BE(STATE_MAGIC, 1);
  b.writeUInt32BE(token >>> 0, 5);
  return b;
}

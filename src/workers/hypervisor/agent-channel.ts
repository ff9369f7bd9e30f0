/**
 * The host side of the guest agent channel (docs/guest-agent.md): frames (agent-frames.ts) over the unix
 * socket QEMU exposes for the `corral.agent` virtio-serial port.
 *
 * A host that re-attaches to a running guest (after a worker restart) may start reading in the middle of
 * a frame: it connects in resync mode, sends LIST with a random token, and skips whatever precedes the
 * guest's STATE frame for that token unless it splits into whole frames. The same resync repairs the
 * stream when a frame cannot be decoded (a hostile or corrupted guest): the frame is dropped and counted,
 * and the channel re-finds frame boundaries through a fresh LIST/STATE. Nothing a guest sends throws out
 * of the socket handler, and no bogus length makes the channel buffer more than {@link MAX_FRAME}.
 */
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { encodeList } from './agent-encode.ts';
import { decodeFrame, FrameError, MAX_FRAME, statePattern, type AgentMsg } from './agent-frames.ts';
import { connectUnix, type ConnectOptions } from './unix-socket.ts';

export * from './agent-frames.ts';
export * from './agent-encode.ts';

/** A resync that has not found its STATE within this many bytes gives up (closes the channel). */
const MAX_RESYNC_BYTES = 64 << 20;

/** Splits a byte stream into frame bodies; a length of 0 or over MAX_FRAME is a {@link FrameError}. */
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
      if (len === 0 || len > MAX_FRAME) {
        this.buf = Buffer.alloc(0);
        throw new FrameError(`frame length ${len}`);
      }
      if (this.buf.length < 4 + len) break;
      out.push(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
    }
    return out;
  }
  reset(): void {
    this.buf = Buffer.alloc(0);
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

export interface ChannelOptions {
  /**
   * A partial frame that gets no more bytes for this long (while reading) is taken as a broken stream.
   * @default 5000
   */
  stallMs?: number;
}

/**
 * A connected agent channel. Emits `msg` for each guest frame, `malformed` for each frame dropped, and
 * `close` once. In resync mode it first looks for the STATE frame answering LIST(token): what came before
 * is emitted as frames when it splits into whole, known frames (then `resync` says how many), and dropped
 * otherwise (`resync` says how many bytes).
 */
export class AgentChannel extends EventEmitter<{
  msg: [AgentMsg];
  close: [];
  resync: [ResyncInfo];
  malformed: [reason: string];
}> {
  /** Frames dropped as malformed. */
  malformedCount = 0;
  private split = new FrameSplitter();
  private scan?: { pattern: Buffer; buf: Buffer; from: number };
  private stall?: NodeJS.Timeout;
  private paused = false;
  private readonly stallMs: number;
  private constructor(
    private sock: Socket,
    resyncToken: number | undefined,
    o: ChannelOptions,
  ) {
    super();
    this.stallMs = o.stallMs ?? 5000;
    if (resyncToken !== undefined) this.scanFor(resyncToken);
    sock.on('data', (d: Buffer) => {
      try {
        this.onData(d);
      } catch (e) {
        // Only a listener can throw here (the decoding does not): drop, count, carry on.
        this.bad(`a listener failed: ${(e as Error).message}`, false);
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      clearTimeout(this.stall);
      this.emit('close');
    });
  }

  /** Connect; with `resyncToken`, the caller sends LIST with that token and the channel skips to its STATE. */
  static async connect(path: string, o: ConnectOptions & ChannelOptions, resyncToken?: number): Promise<AgentChannel> {
    return new AgentChannel(await connectUnix(path, o), resyncToken, o);
  }

  /** A channel over a connected socket (tests). */
  static over(sock: Socket, o: ChannelOptions = {}, resyncToken?: number): AgentChannel {
    return new AgentChannel(sock, resyncToken, o);
  }

  private scanFor(token: number): void {
    this.scan = { pattern: statePattern(token), buf: Buffer.alloc(0), from: 4 };
  }

  /** Drop what is buffered and find the frame boundaries again: LIST(new token), skip to its STATE. */
  resync(): void {
    const token = randomInt(1, 0xffffffff);
    const held = this.scan?.buf ?? Buffer.alloc(0);
    this.split.reset();
    this.scanFor(token);
    if (this.scan) this.scan.buf = held;
    this.send(encodeList(token));
  }

  private bad(reason: string, resync: boolean): void {
    this.malformedCount++;
    this.emit('malformed', reason);
    if (resync) this.resync();
  }

  private onData(d: Buffer): void {
    clearTimeout(this.stall);
    const s = this.scan;
    if (s) {
      s.buf = s.buf.length ? Buffer.concat([s.buf, d]) : d;
      const at = s.buf.indexOf(s.pattern, s.from);
      if (at < 0) {
        s.from = Math.max(4, s.buf.length - s.pattern.length + 1);
        if (s.buf.length > MAX_RESYNC_BYTES) this.sock.destroy();
        this.armStall();
        return;
      }
      this.scan = undefined;
      const pre = s.buf.subarray(0, at - 4);
      const split = new FrameSplitter();
      let msgs: (AgentMsg | null)[];
      try {
        msgs = split.push(pre).map(decodeSafe);
      } catch {
        msgs = [null];
      }
      const whole = split.buffered === 0 && msgs.every((m) => m !== null);
      this.emit('resync', whole ? { discarded: 0, frames: msgs.length } : { discarded: pre.length, frames: 0 });
      if (whole) for (const m of msgs) if (m) this.emit('msg', m);
      d = s.buf.subarray(at - 4);
    }
    let bodies: Buffer[];
    try {
      bodies = this.split.push(d);
    } catch (e) {
      this.bad((e as Error).message, true);
      return;
    }
    for (const body of bodies) {
      let m: AgentMsg | null;
      try {
        m = decodeFrame(body);
      } catch (e) {
        // A frame that does not decode may be a misread boundary: drop it, and re-find the boundaries.
        this.bad(e instanceof FrameError ? e.message : String(e), true);
        return;
      }
      if (m) this.emit('msg', m);
      else this.bad(`unknown frame type ${body[0]}`, true);
      if (this.scan) return; // a listener asked for a resync
    }
    this.armStall();
  }

  /** A partial frame that stops growing while we read: the stream is broken. (A scan has its own bounds.) */
  private armStall(): void {
    if (this.scan || this.split.buffered === 0 || this.paused || this.sock.destroyed) return;
    this.stall = setTimeout(() => this.bad('a frame that never completes', true), this.stallMs);
  }

  get isClosed(): boolean {
    return this.sock.destroyed;
  }

  /** Stop reading the socket (output back-pressure): the guest buffers, then its processes block. */
  pauseReading(): void {
    this.paused = true;
    clearTimeout(this.stall);
    this.sock.pause();
  }
  resumeReading(): void {
    if (!this.paused) return;
    this.paused = false;
    this.sock.resume();
    this.armStall();
  }

  /** Queue a frame; never blocks (Node buffers what the socket cannot take yet). False when closed. */
  send(frame: Buffer): boolean {
    if (this.sock.destroyed) return false;
    this.sock.write(frame);
    return true;
  }

  close(): void {
    clearTimeout(this.stall);
    this.sock.destroy();
  }
}

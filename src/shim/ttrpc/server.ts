/**
 * A ttrpc server (unary calls only, as containerd 1.6 speaks: ttrpc v1.1) on a unix socket.
 *
 * Each connection carries any number of concurrent calls; each call's response goes out on the request's
 * stream id as soon as its handler settles, so responses leave in any order. Handlers come from
 * {@link ServiceHandlers} tables (service.ts; `bindService` builds one from a generated descriptor).
 *
 * How a request is answered, following the Go server (containerd/ttrpc `server.go`):
 * - even stream id → INVALID_ARGUMENT (checked first, for every frame type);
 * - frame type other than request → ignored (forward compatibility);
 * - payload over 4 MiB → discarded, RESOURCE_EXHAUSTED;
 * - envelope that does not decode → INVALID_ARGUMENT; a stream id already in flight → INVALID_ARGUMENT;
 * - unknown service → UNIMPLEMENTED "service X"; unknown method → UNIMPLEMENTED "method Y";
 * - `timeout_nano` > 0: at the deadline the handler's signal aborts and the call answers DEADLINE_EXCEEDED;
 * - a handler's throw → the status from `toStatus` (status.ts). Error responses carry an empty payload
 *   (the Go 1.1 client decodes the payload before it looks at the status). Success carries status code 0.
 * A connection that closes aborts its calls' signals (Cancelled); their results are dropped.
 *
 * `listen(path)` removes a stale socket file first. `close()` stops accepting, aborts every call, ends the
 * connections (flushing what was written) and resolves when all are gone. `connectionCount` and the
 * `onConnectionClose` option say when containerd hangs up (after which a Shutdown may be all that is left).
 */
import { rmSync } from 'node:fs';
import net from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { err } from '../../errors.ts';
import { type Request, RequestSchema, ResponseSchema } from '../gen/ttrpc_pb.ts';
import { type Decoded, encodeFrame, FrameDecoder, FrameType, MAX_PAYLOAD } from './frame.ts';
import type { CallContext, Metadata, ServiceHandlers } from './service.ts';
import { StatusCode, toStatus } from './status.ts';

export interface TtrpcServerOptions {
  /** After a connection closed; `open` is the number still open. */
  readonly onConnectionClose?: (open: number) => void;
  /** A socket error (the connection is closed after it); default: ignored. */
  readonly onError?: (e: Error) => void;
}

const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout's limit: a longer deadline counts as none

export class TtrpcServer {
  readonly #services = new Map<string, ServiceHandlers>();
  readonly #conns = new Set<net.Socket>();
  readonly #calls = new Set<AbortController>();
  readonly #opts: TtrpcServerOptions;
  #server: net.Server | undefined;
  #path: string | undefined;

  constructor(services: readonly ServiceHandlers[] = [], opts: TtrpcServerOptions = {}) {
    for (const s of services) this.register(s);
    this.#opts = opts;
  }

  /** Adds (or replaces) one service's handlers. */
  register(s: ServiceHandlers): this {
    this.#services.set(s.service, s);
    return this;
  }

  get connectionCount(): number {
    return this.#conns.size;
  }

  /** Listens on the unix socket `path`, replacing a stale socket file. */
  async listen(path: string): Promise<void> {
    rmSync(path, { force: true });
    const server = this.#adopt(net.createServer());
    this.#path = path;
    await new Promise<void>((resolve, reject) => {
      const fail = (e: Error) => {
        this.#server = this.#path = undefined;
        reject(e);
      };
      server.once('error', fail);
      server.listen(path, () => {
        server.off('error', fail);
        resolve();
      });
    });
  }

  /** Serves on an already-listening (or about to listen) `net.Server`, e.g. one bound to an inherited fd. */
  serve(server: net.Server): void {
    this.#adopt(server);
  }

  /** Stops accepting, aborts in-flight calls, ends every connection; resolves when all are closed. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const c of this.#calls) c.abort(err.cancelled('ttrpc server closing'));
    for (const s of this.#conns) s.end(() => s.destroy());
    await closed;
    if (this.#path) rmSync(this.#path, { force: true });
    this.#path = undefined;
  }

  #adopt(server: net.Server): net.Server {
    if (this.#server) throw err.precondition('ttrpc server is already serving');
    this.#server = server;
    server.on('connection', (s) => this.#connection(s));
    return server;
  }

  #connection(sock: net.Socket): void {
    this.#conns.add(sock);
    const decoder = new FrameDecoder();
    const inflight = new Map<number, AbortController>();
    const send = (streamId: number, code: number, message: string, payload?: Uint8Array) => {
      if (sock.destroyed || !sock.writable) return;
      const status = { code, message };
      const resp = toBinary(ResponseSchema, create(ResponseSchema, { status, payload }));
      if (resp.length <= MAX_PAYLOAD) sock.write(encodeFrame(streamId, FrameType.Response, resp));
      else send(streamId, StatusCode.RESOURCE_EXHAUSTED, `response of ${resp.length} bytes exceeds ${MAX_PAYLOAD}`);
    };
    sock.on('data', (chunk: Buffer) => {
      for (const d of decoder.push(chunk)) this.#frame(d, send, inflight);
    });
    sock.on('error', (e) => this.#opts.onError?.(e));
    sock.on('close', () => {
      for (const c of inflight.values()) c.abort(err.cancelled('ttrpc connection closed'));
      this.#conns.delete(sock);
      this.#opts.onConnectionClose?.(this.#conns.size);
    });
  }

  #frame(d: Decoded, send: Send, inflight: Map<number, AbortController>): void {
    const { streamId, type, length } = d.header;
    if (streamId % 2 !== 1) {
      return send(streamId, StatusCode.INVALID_ARGUMENT, 'StreamID must be odd for client initiated streams');
    }
    if (d.kind === 'oversized') {
      return send(streamId, StatusCode.RESOURCE_EXHAUSTED, `message length ${length} exceeds maximum ${MAX_PAYLOAD}`);
    }
    if (type !== FrameType.Request) return; // unknown or streaming frame types: ignored, as ttrpc 1.1 does
    let req: Request;
    try {
      req = fromBinary(RequestSchema, d.payload);
    } catch (e) {
      return send(streamId, StatusCode.INVALID_ARGUMENT, `unmarshal request error: ${(e as Error).message}`);
    }
    if (inflight.has(streamId)) return send(streamId, StatusCode.INVALID_ARGUMENT, 'StreamID is already in use');
    const svc = this.#services.get(req.service);
    if (!svc) return send(streamId, StatusCode.UNIMPLEMENTED, `service ${req.service}`);
    const handler = Object.hasOwn(svc.methods, req.method) ? svc.methods[req.method] : undefined;
    if (!handler) return send(streamId, StatusCode.UNIMPLEMENTED, `method ${req.method}`);
    this.#call(req, streamId, send, inflight, handler);
  }

  #call(
    req: Request,
    streamId: number,
    send: Send,
    inflight: Map<number, AbortController>,
    run: (payload: Uint8Array, ctx: CallContext) => Promise<Uint8Array>,
  ): void {
    const ac = new AbortController();
    const ms = Number(req.timeoutNano / 1_000_000n);
    const deadline = req.timeoutNano > 0n && ms <= MAX_TIMER_MS ? Date.now() + ms : undefined;
    let answered = false;
    const answer = (code: number, message: string, payload?: Uint8Array) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      inflight.delete(streamId);
      this.#calls.delete(ac);
      send(streamId, code, message, payload);
    };
    const timer =
      deadline === undefined
        ? undefined
        : setTimeout(() => {
            answer(StatusCode.DEADLINE_EXCEEDED, 'context deadline exceeded');
            ac.abort(err.timeout(`${req.service}/${req.method}: deadline exceeded`));
          }, ms);
    ac.signal.addEventListener('abort', () => answer(StatusCode.CANCELLED, 'context canceled'), { once: true });
    inflight.set(streamId, ac);
    this.#calls.add(ac);
    const ctx: CallContext = {
      service: req.service,
      method: req.method,
      metadata: metadataOf(req),
      signal: ac.signal,
      deadline,
    };
    void Promise.resolve()
      .then(() => run(req.payload, ctx))
      .then(
        (out) => answer(StatusCode.OK, '', out),
        (e: unknown) => {
          const s = toStatus(e);
          answer(s.code, s.message);
        },
      );
  }
}

type Send = (streamId: number, code: number, message: string, payload?: Uint8Array) => void;

function metadataOf(req: Request): Metadata {
  const md: Record<string, string[]> = {};
  for (const { key, value } of req.metadata) (md[key] ??= []).push(value);
  return md;
}

/**
 * A ttrpc client (unary calls, ttrpc v1.1 as containerd 1.6 speaks it) over a unix socket. The shim uses it
 * to forward events to containerd (`containerd.services.events.ttrpc.v1.Events/Forward`); tests use it as
 * a fake containerd.
 *
 * Calls go out on odd stream ids 1, 3, 5, … and may be concurrent; each response is matched by stream id.
 * A call rejects with a {@link TtrpcError} (a CorralError whose code is the reverse mapping of the gRPC
 * status, status.ts):
 * - the peer answered a non-OK status → that status;
 * - `timeoutMs` passed (also sent to the server as `timeout_nano`) → DEADLINE_EXCEEDED (code Timeout);
 * - the connection closed before the answer (either side; `close()` included) → UNAVAILABLE;
 * - the request is over 4 MiB → RESOURCE_EXHAUSTED, without sending.
 * `connect` rejects with Unavailable when nothing listens, Timeout after `timeoutMs`.
 */
import net from 'node:net';
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import { err } from '../../errors.ts';
import { RequestSchema, ResponseSchema } from '../gen/ttrpc_pb.ts';
import { encodeFrame, FrameDecoder, FrameType, MAX_PAYLOAD } from './frame.ts';
import { fromStatus, StatusCode } from './status.ts';

export interface ConnectOptions {
  /** Give up connecting after this long (default: no limit beyond the OS's). */
  readonly timeoutMs?: number;
}

export interface CallOptions {
  /** Deadline of the call, sent as `timeout_nano` and enforced here too (default: none). */
  readonly timeoutMs?: number;
  /** Request metadata (ttrpc KeyValue pairs), e.g. `{ 'containerd-namespace-ttrpc': 'default' }`. */
  readonly metadata?: Readonly<Record<string, string | readonly string[]>>;
}

/** A unary method as the generated descriptors describe it (`Task.method.create`). */
export interface UnaryMethod<I extends DescMessage, O extends DescMessage> {
  readonly name: string;
  readonly parent: { readonly typeName: string };
  readonly input: I;
  readonly output: O;
}

interface Pending {
  resolve(payload: Uint8Array): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export class TtrpcClient {
  readonly #sock: net.Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #closed: Promise<void>;
  #next = 1;
  #isClosed = false;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    const decoder = new FrameDecoder();
    sock.on('data', (chunk: Buffer) => {
      for (const d of decoder.push(chunk)) {
        const p = this.#pending.get(d.header.streamId);
        if (!p || d.header.type !== FrameType.Response) continue;
        if (d.kind === 'oversized') p.reject(fromStatus(StatusCode.RESOURCE_EXHAUSTED, 'response over 4 MiB'));
        else this.#answer(p, d.payload);
      }
    });
    sock.on('error', () => {
      // The 'close' that follows rejects every pending call; nothing else is waiting on the error.
    });
    this.#closed = new Promise((resolve) =>
      sock.once('close', () => {
        this.#isClosed = true;
        for (const p of [...this.#pending.values()])
          p.reject(fromStatus(StatusCode.UNAVAILABLE, 'ttrpc connection closed'));
        resolve();
      }),
    );
  }

  /** Connects to the unix socket `path`. */
  static connect(path: string, opts: ConnectOptions = {}): Promise<TtrpcClient> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(path);
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              sock.destroy();
              reject(err.timeout(`ttrpc connect ${path}: no connection after ${opts.timeoutMs} ms`));
            }, opts.timeoutMs);
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(err.unavailable(`ttrpc connect ${path}: ${e.message}`, e));
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve(new TtrpcClient(sock));
      });
    });
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Resolves once the connection is closed (by either side). */
  closed(): Promise<void> {
    return this.#closed;
  }

  /** Calls `service`/`method` with a marshalled request; resolves to the marshalled response. */
  call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    if (this.#isClosed || this.#sock.destroyed) {
      return Promise.reject(fromStatus(StatusCode.UNAVAILABLE, 'ttrpc connection closed'));
    }
    const metadata = Object.entries(opts.metadata ?? {}).flatMap(([key, v]) =>
      (typeof v === 'string' ? [v] : v).map((value) => ({ key, value })),
    );
    const timeoutNano = BigInt(Math.max(0, Math.round(opts.timeoutMs ?? 0))) * 1_000_000n;
    const req = toBinary(RequestSchema, create(RequestSchema, { service, method, payload, timeoutNano, metadata }));
    if (req.length > MAX_PAYLOAD) {
      return Promise.reject(fromStatus(StatusCode.RESOURCE_EXHAUSTED, `request of ${req.length} bytes over 4 MiB`));
    }
    const id = this.#next;
    this.#next += 2;
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(p.timer);
        this.#pending.delete(id);
      };
      const p: Pending = {
        resolve: (out) => {
          done();
          resolve(out);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        timer: undefined,
      };
      if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
        const msg = `${service}/${method}: deadline of ${opts.timeoutMs} ms exceeded`;
        p.timer = setTimeout(() => p.reject(fromStatus(StatusCode.DEADLINE_EXCEEDED, msg)), opts.timeoutMs);
      }
      this.#pending.set(id, p);
      this.#sock.write(encodeFrame(id, FrameType.Request, req));
    });
  }

  /** {@link call} with the generated schemas: `callTyped(Task.method.state, { id })`. */
  async callTyped<I extends DescMessage, O extends DescMessage>(
    method: UnaryMethod<I, O>,
    input: MessageInitShape<I>,
    opts?: CallOptions,
  ): Promise<MessageShape<O>> {
    const payload = toBinary(method.input, create(method.input, input));
    return fromBinary(method.output, await this.call(method.parent.typeName, method.name, payload, opts));
  }

  /** Closes the connection; pending calls reject with UNAVAILABLE. */
  close(): void {
    this.#sock.destroy();
  }

  #answer(p: Pending, bytes: Uint8Array): void {
    try {
      const resp = fromBinary(ResponseSchema, bytes);
      const code = resp.status?.code ?? StatusCode.OK;
      if (code === StatusCode.OK) p.resolve(resp.payload);
      else p.reject(fromStatus(code, resp.status?.message ?? ''));
    } catch (e) {
      p.reject(fromStatus(StatusCode.INTERNAL, `undecodable ttrpc response: ${(e as Error).message}`));
    }
  }
}

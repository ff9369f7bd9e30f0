// A real TtrpcServer and TtrpcClient over a unix socket in a temp dir; raw frames where the client cannot
// produce the input (even stream ids, garbage envelopes, unknown frame types, oversized frames).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Code, CorralError } from '../../src/errors.ts';
import { Task } from '../../src/shim/gen/shim_pb.ts';
import { Status } from '../../src/shim/gen/task_types_pb.ts';
import { RequestSchema, type Response, ResponseSchema } from '../../src/shim/gen/ttrpc_pb.ts';
import { TtrpcClient } from '../../src/shim/ttrpc/client.ts';
import { encodeFrame, encodeHeader, FrameDecoder, FrameType, MAX_PAYLOAD } from '../../src/shim/ttrpc/frame.ts';
import { TtrpcServer } from '../../src/shim/ttrpc/server.ts';
import { bindService, type CallContext, type UnaryHandler } from '../../src/shim/ttrpc/service.ts';
import { StatusCode, type TtrpcError } from '../../src/shim/ttrpc/status.ts';

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
const aborted = (s: AbortSignal) => new Promise<unknown>((r) => s.addEventListener('abort', () => r(s.reason)));
const text = (b: Uint8Array) => Buffer.from(b).toString();

let dir: string;
let sock: string;
let server: TtrpcServer;
let client: TtrpcClient | undefined;
let release: ReturnType<typeof deferred<void>>;
let blocked: ReturnType<typeof deferred<CallContext>>;
let closes: number[];

const testService: Record<string, UnaryHandler> = {
  Echo: async (p) => p,
  Meta: async (_p, ctx) => Buffer.from(JSON.stringify(ctx.metadata)),
  Block: async (_p, ctx) => {
    blocked.resolve(ctx);
    await release.promise;
    return Buffer.from('late');
  },
  UntilAbort: async (_p, ctx) => {
    blocked.resolve(ctx);
    await aborted(ctx.signal);
    return Buffer.from('ignored');
  },
  Throw: async (p) => {
    const [code, message = ''] = text(p).split(':');
    throw code === 'plain' ? new Error(message) : new CorralError(code as Code, message);
  },
};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ttrpc-'));
  sock = join(dir, 's.sock');
  release = deferred();
  blocked = deferred<CallContext>();
  closes = [];
  server = new TtrpcServer([{ service: 'test.T', methods: testService }], { onConnectionClose: (n) => closes.push(n) });
  server.register(
    bindService(Task, {
      state: (req) => ({ id: req.id, pid: 42, status: Status.RUNNING }),
      create: async (req) => ({ pid: req.bundle.length }),
    }),
  );
  await server.listen(sock);
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const connect = async () => (client ??= await TtrpcClient.connect(sock, { timeoutMs: 2000 }));
const call = async (method: string, body = '', opts = {}) =>
  (await connect()).call('test.T', method, Buffer.from(body), opts);
const rejection = (p: Promise<unknown>) =>
  p.then(
    () => expect.fail('resolved'),
    (e: unknown) => e as TtrpcError,
  );

/** Writes `wire` on a fresh connection and collects `n` response frames. */
function raw(wire: Uint8Array, n: number): Promise<{ streamId: number; resp: Response }[]> {
  const s = net.createConnection(sock);
  const dec = new FrameDecoder();
  const out: { streamId: number; resp: Response }[] = [];
  return new Promise((resolve, reject) => {
    s.on('error', reject);
    s.on('data', (c: Buffer) => {
      for (const d of dec.push(c)) {
        if (d.kind === 'frame') out.push({ streamId: d.header.streamId, resp: fromBinary(ResponseSchema, d.payload) });
      }
      if (out.length < n) return;
      s.destroy();
      resolve(out);
    });
    s.write(wire);
  });
}
const request = (id: number, method: string, extra = {}) =>
  encodeFrame(
    id,
    FrameType.Request,
    toBinary(RequestSchema, create(RequestSchema, { service: 'test.T', method, ...extra })),
  );

describe('ttrpc server and client', () => {
  it('multiplexes concurrent calls and answers them out of order', async () => {
    const c = await connect();
    const order: string[] = [];
    const slow = c.call('test.T', 'Block', new Uint8Array()).then((b) => order.push(text(b)));
    await blocked.promise;
    await c.call('test.T', 'Echo', Buffer.from('fast')).then((b) => order.push(text(b)));
    const state = await c.callTyped(Task.method.state, { id: 'c1' });
    expect(state).toMatchObject({ id: 'c1', pid: 42, status: Status.RUNNING });
    release.resolve();
    await slow;
    expect(order).toEqual(['fast', 'late']);
  });

  it('passes metadata and decodes typed requests', async () => {
    const md = await call('Meta', '', { metadata: { a: 'x', b: ['y', 'z'] } });
    expect(JSON.parse(text(md))).toEqual({ a: ['x'], b: ['y', 'z'] });
    expect(await client?.callTyped(Task.method.create, { id: 'c', bundle: '/run/b' })).toMatchObject({ pid: 6 });
  });

  it('answers DEADLINE_EXCEEDED at timeout_nano and aborts the handler with a Timeout reason', async () => {
    const [r] = await raw(request(1, 'UntilAbort', { timeoutNano: 20_000_000n }), 1);
    expect(r?.resp.status).toMatchObject({ code: StatusCode.DEADLINE_EXCEEDED });
    expect(r?.resp.payload).toHaveLength(0);
    const ctx = await blocked.promise;
    expect(ctx.signal.reason).toMatchObject({ code: 'Timeout' });
    expect(ctx.deadline).toBeTypeOf('number');
  });

  it('rejects a client call at its timeout with code Timeout', async () => {
    const e = await rejection(call('UntilAbort', '', { timeoutMs: 20 }));
    expect(e).toMatchObject({ code: 'Timeout', status: StatusCode.DEADLINE_EXCEEDED });
  });

  it('answers UNIMPLEMENTED for an unknown service or method (and methods bindService was not given)', async () => {
    const c = await connect();
    await expect(c.call('nope.S', 'X', new Uint8Array())).rejects.toMatchObject({
      status: 12,
      message: 'service nope.S',
    });
    await expect(c.call('test.T', 'Nope', new Uint8Array())).rejects.toMatchObject({ message: 'method Nope' });
    await expect(c.callTyped(Task.method.pause, { id: 'c' })).rejects.toMatchObject({ code: 'NotImplemented' });
  });

  it.each([
    ['InvalidArgument', 3],
    ['NotFound', 5],
    ['AlreadyExists', 6],
    ['FailedPrecondition', 9],
    ['Timeout', 4],
    ['Unavailable', 14],
    ['Cancelled', 1],
    ['ResourceExhausted', 8],
    ['NotImplemented', 12],
    ['Internal', 13],
  ] as const)('maps CorralError %s to gRPC %i and back', async (code, status) => {
    const e = await rejection(call('Throw', `${code}:boom`));
    expect(e).toBeInstanceOf(CorralError);
    expect(e).toMatchObject({ code, status, message: 'boom' });
  });

  it('maps any other throw to UNKNOWN with its message, empty payload (read back as Internal)', async () => {
    const [r] = await raw(request(1, 'Throw', { payload: Buffer.from('plain:oops') }), 1);
    expect(r?.resp.status).toMatchObject({ code: StatusCode.UNKNOWN, message: 'oops' });
    expect(r?.resp.payload).toHaveLength(0);
    expect(await rejection(call('Throw', 'plain:oops'))).toMatchObject({ code: 'Internal', status: 2 });
  });

  it('rejects pending calls when the client closes, and aborts their handlers', async () => {
    const c = await connect();
    const pending = rejection(c.call('test.T', 'Block', new Uint8Array()));
    const ctx = await blocked.promise;
    c.close();
    expect(await pending).toMatchObject({ code: 'Unavailable' });
    expect(await aborted(ctx.signal)).toMatchObject({ code: 'Cancelled' });
    await expect(c.call('test.T', 'Echo', new Uint8Array())).rejects.toMatchObject({ code: 'Unavailable' });
  });

  it('rejects pending calls when the server closes, and reports connection closes', async () => {
    const c = await connect();
    expect(server.connectionCount).toBe(1);
    const pending = rejection(c.call('test.T', 'Block', new Uint8Array()));
    await blocked.promise;
    await server.close();
    expect(await pending).toMatchObject({ code: 'Cancelled', status: StatusCode.CANCELLED });
    await c.closed();
    expect(closes).toEqual([0]);
    expect(server.connectionCount).toBe(0);
  });

  it('replaces a stale socket file on listen', async () => {
    await server.close();
    writeFileSync(sock, 'stale');
    server = new TtrpcServer([{ service: 'test.T', methods: testService }]);
    await server.listen(sock);
    expect(text(await call('Echo', 'hi'))).toBe('hi');
  });
});

describe('ttrpc server: malformed input (raw frames)', () => {
  it('answers an even stream id with INVALID_ARGUMENT on that stream', async () => {
    const [r] = await raw(request(2, 'Echo'), 1);
    expect(r).toMatchObject({ streamId: 2, resp: { status: { code: StatusCode.INVALID_ARGUMENT } } });
  });

  it('answers an undecodable envelope with INVALID_ARGUMENT', async () => {
    const [r] = await raw(encodeFrame(1, FrameType.Request, new Uint8Array([0x0a, 0xff])), 1);
    expect(r?.resp.status?.code).toBe(StatusCode.INVALID_ARGUMENT);
  });

  it('ignores unknown frame types', async () => {
    const wire = Buffer.concat([
      encodeFrame(1, 0x09, new Uint8Array([1])),
      request(3, 'Echo', { payload: new Uint8Array([7]) }),
    ]);
    const rs = await raw(wire, 1);
    expect(rs).toMatchObject([{ streamId: 3, resp: { payload: new Uint8Array([7]) } }]);
  });

  it('discards an oversized frame, answers RESOURCE_EXHAUSTED, and keeps serving the connection', async () => {
    const head = encodeHeader({ length: MAX_PAYLOAD + 1, streamId: 5, type: FrameType.Request, flags: 0 });
    const wire = Buffer.concat([
      head,
      new Uint8Array(MAX_PAYLOAD + 1),
      request(7, 'Echo', { payload: new Uint8Array([9]) }),
    ]);
    const rs = await raw(wire, 2);
    expect(rs.map((r) => [r.streamId, r.resp.status?.code])).toEqual([
      [5, StatusCode.RESOURCE_EXHAUSTED],
      [7, StatusCode.OK],
    ]);
  });

  it('answers a typed handler whose payload does not decode with INVALID_ARGUMENT', async () => {
    const bad = { service: Task.typeName, method: 'State', payload: new Uint8Array([0x0a, 0x05]) };
    const [r] = await raw(encodeFrame(1, 1, toBinary(RequestSchema, create(RequestSchema, bad))), 1);
    expect(r?.resp.status?.code).toBe(StatusCode.INVALID_ARGUMENT);
    expect(r?.resp.payload).toHaveLength(0);
  });
});

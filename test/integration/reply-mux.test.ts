/**
 * The shared-inbox request path (src/bus/reply-mux.ts) on a real nats-server: replies reach their own
 * request, and each failure is the error class nats.js's own request gives (nats-errors.ts reads them).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNats } from '../../src/bus/connection.ts';
import { isConnectionClosed, isNatsTimeout, isNoResponders, jetStreamCode } from '../../src/bus/nats-errors.ts';
import { jsPublish, muxRequest } from '../../src/bus/reply-mux.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';

let nats: TestNats;
beforeAll(async () => {
  nats = await natsServer();
});
afterAll(async () => {
  await nats.cleanup();
});

const te = new TextEncoder();
const td = new TextDecoder();

describe('muxRequest', () => {
  it('answers each request with its own reply, many in flight', async () => {
    const sub = nats.nc.subscribe('mux.echo', {
      callback: (_e, m) => {
        m.respond(m.data);
      },
    });
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => muxRequest(nats.nc, 'mux.echo', te.encode(`r${i}`), 5000)),
    );
    expect(replies.map((m) => td.decode(m.data))).toEqual(Array.from({ length: 50 }, (_, i) => `r${i}`));
    sub.unsubscribe();
  });

  it('no subscriber: a no-responders error', async () => {
    const e = await muxRequest(nats.nc, 'mux.nobody', te.encode('x'), 5000).catch((x: unknown) => x);
    expect(isNoResponders(e)).toBe(true);
  });

  it('a silent responder: a timeout, and its late reply goes nowhere', async () => {
    let late: (() => void) | undefined;
    const sub = nats.nc.subscribe('mux.silent', {
      callback: (_e, m) => {
        late = () => m.respond(m.data);
      },
    });
    const e = await muxRequest(nats.nc, 'mux.silent', te.encode('x'), 200).catch((x: unknown) => x);
    expect(isNatsTimeout(e)).toBe(true);
    late?.(); // dropped: no request waits for it
    sub.unsubscribe();
  });

  it('a closed connection: pending and new requests fail as closed', async () => {
    const nc = await connectNats(nats.url, 'mux-close');
    const sub = nats.nc.subscribe('mux.hold', { callback: () => {} });
    await nats.nc.flush();
    const pending = muxRequest(nc, 'mux.hold', te.encode('x'), 60_000).catch((x: unknown) => x);
    await nc.flush();
    await nc.close();
    expect(isConnectionClosed(await pending)).toBe(true);
    const after = await muxRequest(nc, 'mux.hold', te.encode('x'), 1000).catch((x: unknown) => x);
    expect(isConnectionClosed(after)).toBe(true);
    sub.unsubscribe();
  });
});

describe('jsPublish', () => {
  it('stores once per msgId (a repeat names the first copy) and reports JetStream refusals by code', async () => {
    const jsm = await jetstreamManager(nats.nc);
    await jsm.streams.add({ name: 'MUXT', subjects: ['muxt.>'], max_msg_size: 64 });
    const a = await jsPublish(nats.nc, 'muxt.a', te.encode('one'), { msgId: 'm1', timeoutMs: 5000 });
    const b = await jsPublish(nats.nc, 'muxt.a', te.encode('one'), { msgId: 'm1', timeoutMs: 5000 });
    expect(a).toMatchObject({ stream: 'MUXT', duplicate: false });
    expect(b).toMatchObject({ seq: a.seq, duplicate: true });
    const big = await jsPublish(nats.nc, 'muxt.a', new Uint8Array(200), { timeoutMs: 5000 }).catch((x: unknown) => x);
    expect(jetStreamCode(big)).toBeTypeOf('number');
    const none = await jsPublish(nats.nc, 'nostream.a', te.encode('x'), { timeoutMs: 5000 }).catch((x: unknown) => x);
    expect(isNoResponders(none)).toBe(true);
    await jsm.streams.delete('MUXT');
  });
});

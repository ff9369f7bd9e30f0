/**
 * The agent's start-up probe for workers that outlived it (agent/worker-probe.ts), against a real
 * nats-server: a worker that answers its first pings late is still found (adopted, not doubled); no
 * subscriber means none runs; a subscriber that never answers is reported silent at the deadline.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LATER, respond, serve } from '../../src/bus/serve.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { probeWorker } from '../../src/agent/worker-probe.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';

let n: TestNats;
beforeAll(async () => {
  n = await natsServer();
});
afterAll(() => n.cleanup());

it('finds a worker whose first pings time out (it is busy), and does not report it missing', async () => {
  let pings = 0;
  const sub = serve(n.nc, subjects.worker('probe-a', 'mount', '__ping'), (_b, req) => {
    pings++;
    if (pings < 3) return LATER; // busy: these pings get no answer within their 1 s
    respond(req.msg, { ok: true, result: { pid: 4242 } });
    return LATER;
  });
  await n.nc.flush();
  try {
    expect(await probeWorker(n.nc, 'probe-a', 'mount', 10_000)).toEqual({ pid: 4242 });
    expect(pings).toBe(3);
  } finally {
    sub.unsubscribe();
  }
});

it('reports none when nobody serves the ping', async () => {
  expect(await probeWorker(n.nc, 'probe-b', 'hypervisor', 10_000)).toEqual({ pid: undefined, reason: 'none' });
});

it('reports a subscriber that never answers as silent once the deadline passes', async () => {
  const sub = serve(n.nc, subjects.worker('probe-c', 'mount', '__ping'), () => LATER);
  await n.nc.flush();
  try {
    expect(await probeWorker(n.nc, 'probe-c', 'mount', 1500)).toEqual({ pid: undefined, reason: 'silent' });
  } finally {
    sub.unsubscribe();
  }
});

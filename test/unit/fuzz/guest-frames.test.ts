/**
 * A malformed or hostile guest never crashes the hypervisor worker (issue 8, item 9), as properties over
 * random input: `decodeFrame` answers a message, null (an unknown type) or a FrameError, never anything
 * else, and whatever it decodes is well formed; the AgentChannel fed random byte streams through a real
 * unix socket never throws, counts what it drops, and emits only well-formed messages. At least 5,000 and
 * 300 cases (`npm run fuzz`: 10,000 each).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNS } from './runs.ts';
import {
  AgentChannel,
  decodeFrame,
  FRAME,
  FrameError,
  type AgentMsg,
} from '../../../src/workers/hypervisor/agent-channel.ts';

const GUEST_TYPES = [FRAME.READY, FRAME.STARTED, FRAME.OUTPUT, FRAME.EXIT, FRAME.ERROR, FRAME.STATE, FRAME.WINDOW];
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const str = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
/** Well-formed guest frame bodies (type byte first), to mutate. */
const valid = fc.oneof(
  fc
    .tuple(fc.stringMatching(/^[a-z0-9]{1,16}$/), fc.nat(0xffff))
    .map(([c, s]) => Buffer.concat([Buffer.of(FRAME.EXIT), str(c), u32(s)])),
  fc
    .tuple(
      fc.stringMatching(/^[a-z0-9]{1,16}(\/[a-z0-9]{1,8})?$/),
      fc.constantFrom(1, 2),
      fc.uint8Array({ maxLength: 64 }),
    )
    .map(([k, fd, d]) =>
      Buffer.concat([Buffer.of(FRAME.OUTPUT), str(k), Buffer.of(fd), u32(d.length), Buffer.from(d)]),
    ),
  fc.tuple(fc.nat(), fc.nat(9)).map(([t, v]) => Buffer.concat([Buffer.of(FRAME.READY), u32(t), u32(v)])),
);
const mutated = fc
  .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }), fc.nat(8))
  .map(([b, flips, cut]) => {
    const m = Buffer.from(b);
    for (const [at, v] of flips) m[at % m.length] = v;
    return m.subarray(0, Math.max(1, m.length - cut));
  });
const hostile = fc.oneof(
  mutated,
  valid,
  fc
    .tuple(fc.constantFrom(...GUEST_TYPES), fc.uint8Array({ maxLength: 96 }))
    .map(([t, p]) => Buffer.concat([Buffer.of(t), p])),
  fc.uint8Array({ minLength: 1, maxLength: 96 }).map((a) => Buffer.from(a)),
);

function wellFormed(m: AgentMsg) {
  if ('containerId' in m) {
    expect(m.containerId).toMatch(/^[^/\0]+$/);
    if ('execId' in m && m.execId !== undefined) expect(m.execId).toMatch(/^[^/\0]+$/);
  }
  if (m.type === 'output') expect([1, 2]).toContain(m.fd);
  if (m.type === 'exit') expect(m.status).toBeLessThanOrEqual(0xffff);
}

describe('decodeFrame on hostile input', () => {
  it('answers a message, null or a FrameError, and what it decodes is well formed', () => {
    fc.assert(
      fc.property(hostile, (body) => {
        let m: AgentMsg | null;
        try {
          m = decodeFrame(body);
        } catch (e) {
          expect(e).toBeInstanceOf(FrameError);
          return;
        }
        if (m) wellFormed(m);
      }),
      { numRuns: Math.max(RUNS, 5000) },
    );
  });
});

let dir = '';
beforeAll(() => {
  dir = mkdtempSync('/tmp/crl-frames-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('AgentChannel on a hostile byte stream', () => {
  it('never throws, drops and counts what it cannot read, emits only well-formed messages', async () => {
    const path = join(dir, 'guest.sock');
    const accepted = new Promise<Socket>((res) => {
      const srv = createServer((s) => res(s));
      srv.listen(path);
      afterAll(() => srv.close());
    });
    const ch = await AgentChannel.connect(path, { deadlineMs: Date.now() + 2000, stallMs: 50 });
    const guest = await accepted;
    guest.on('error', () => undefined); // the channel may hang up on garbage: that is allowed
    guest.resume(); // the host's LIST frames (resyncs): read and dropped
    const msgs: AgentMsg[] = [];
    ch.on('msg', (m) => msgs.push(m));
    ch.on('malformed', () => undefined);
    await fc.assert(
      fc.asyncProperty(fc.array(hostile, { minLength: 1, maxLength: 8 }), async (bodies) => {
        if (ch.isClosed) return;
        const stream = Buffer.concat(bodies.map((b) => Buffer.concat([u32(b.length), b])));
        await new Promise<void>((res) => guest.write(stream, () => res()));
      }),
      { numRuns: Math.max(RUNS, 300) },
    );
    await new Promise((r) => setImmediate(r));
    for (const m of msgs) wellFormed(m);
    expect(ch.malformedCount).toBeGreaterThan(0);
    ch.close();
    guest.destroy();
  });
});

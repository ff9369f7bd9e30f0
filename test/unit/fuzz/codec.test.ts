/**
 * What arrives on the bus, decoded (src/bus/codec.ts, and the agent's reader of worker facts,
 * src/bus/worker-facts.ts). `decode` of any bytes answers one value or a CorralError (InvalidArgument;
 * ResourceExhausted past 512 KiB), never another error, and never hands back msgpackr's marker for the
 * reserved byte 0xc1, however deep; truncated and concatenated encodings are refused; `encode` then
 * `decode` gives back any JSON value and is the identity on whatever `decode` returned.
 * `decodeWorkerFact` of any bytes answers a well-formed WorkerEvent (exit, oom, vmExit) or
 * InvalidArgument, so that an unreadable fact is terminated as "undecodable", not as a bug.
 */
import { describe, expect, vi } from 'vitest';
import { decode, encode, MAX_PAYLOAD_BYTES } from '../../../src/bus/codec.ts';
import { decodeWorkerFact } from '../../../src/bus/worker-facts.ts';
import type { WorkerEvent } from '../../../src/domain/ops.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { verdict } from './verdict.ts';
import { broken, throughCodec, wireValue } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const any = { codes: ['InvalidArgument'] as const };

/** msgpackr's stand-in for 0xc1 ("never used"): what `decode` must never let through. */
function hasMarker(v: unknown, seen = new Set<unknown>()): boolean {
  if (!v || typeof v !== 'object' || seen.has(v) || v instanceof Uint8Array) return false;
  seen.add(v);
  if (v.constructor?.name === 'C1Type' && !Object.hasOwn(v, 'constructor')) return true;
  return Object.values(v).some((x) => hasMarker(x, seen));
}

/** Container headers (fixarray, fixmap, array16, map16 with one entry) nested above a payload. */
const nested = fc
  .tuple(
    fc.array(fc.constantFrom([0x91], [0x81, 0xa1, 0x6b], [0xdc, 0x00, 0x01], [0xde, 0x00, 0x01, 0xa0]), {
      maxLength: 48,
      size: 'max',
    }),
    fc.constantFrom([0xc1], [0xc0], [0x01], [0xc1, 0x01]),
  )
  .map(([heads, tail]) => new Uint8Array([...heads.flat(), ...tail]));

const mutatedEncoding = fc
  .tuple(wireValue(), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }))
  .map(([v, flips]) => {
    const b = Buffer.from(encode(v));
    for (const [at, x] of flips) b[at % b.length] = x;
    return new Uint8Array(b);
  });

const bytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), nested, mutatedEncoding);

describe('decode on hostile bytes', () => {
  test.prop([bytes], { numRuns: RUNS })('answers one value or InvalidArgument, never the 0xc1 marker', (b) => {
    const r = verdict(() => decode(b), any);
    if (r.ok) expect(hasMarker(r.value), 'a C1Type marker was returned').toBe(false);
  });

  test.prop([wireValue(), fc.nat()], { numRuns: RUNS })('refuses every strict prefix of an encoding', (v, n) => {
    const e = encode(v);
    const cut = n % e.length;
    expect(verdict(() => decode(e.subarray(0, cut)), any).ok).toBe(false);
  });

  test.prop([wireValue(), wireValue()], { numRuns: RUNS })('refuses two values where one was expected', (a, b) => {
    const r = verdict(() => decode(Buffer.concat([encode(a), encode(b)])), any);
    expect(r.ok).toBe(false);
  });

  test.prop([fc.integer({ min: 1, max: 4096 })], { numRuns: Math.min(RUNS, 50) })(
    'refuses a payload over 512 KiB with ResourceExhausted, before decoding',
    (extra) => {
      const r = verdict(() => decode(new Uint8Array(MAX_PAYLOAD_BYTES + extra)), { codes: ['ResourceExhausted'] });
      expect(r.ok).toBe(false);
    },
  );
});

describe('encode/decode round trip', () => {
  // msgpackr renames a `__proto__` key to `__proto_` (its guard against prototype pollution), so JSON
  // holding one does not come back as it went: a known limit of the codec, left out here.
  const json = fc.jsonValue({ maxDepth: 4 }).filter((v) => !JSON.stringify(v).includes('"__proto__":'));
  test.prop([json], { numRuns: RUNS })('gives back any JSON value (without __proto__ keys)', (v) => {
    const json = JSON.parse(JSON.stringify(v)) as unknown; // -0 is 0 on the wire, as in JSON
    expect(decode(encode(json))).toEqual(json);
  });

  test.prop([wireValue(undefined, 4)], { numRuns: RUNS })('is the identity on what decode returns', (w) => {
    expect(decode(encode(w))).toEqual(w);
  });

  test('regression: a map whose constructor.name is "C1Type" is a map, not the 0xc1 marker', () => {
    const v = { constructor: { name: 'C1Type' } };
    expect(decode(encode(v))).toEqual(v);
  });

  test('regression: 0xc1 nested 33 arrays deep is refused like 0xc1 at the top', () => {
    const b = new Uint8Array([...Array<number>(33).fill(0x91), 0xc1]);
    expect(() => decode(b)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});

const id = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,11}$/);
const at = fc.nat(2 ** 45);
const event = fc.oneof(
  fc.record(
    { kind: fc.constant('exit'), sandboxId: id, containerId: id, execId: id, exitStatus: fc.nat(255), exitedAt: at },
    { requiredKeys: ['kind', 'sandboxId', 'containerId', 'exitStatus', 'exitedAt'] },
  ),
  fc.record({ kind: fc.constant('oom'), sandboxId: id, containerId: id, at }),
  fc.record({
    kind: fc.constant('vmExit'),
    sandboxId: id,
    code: fc.option(fc.nat(255)),
    signal: fc.option(fc.constantFrom('SIGKILL', 'SIGSEGV')),
    at,
  }),
);
const record = fc
  .tuple(id, event, at)
  .map(([node, ev, t]) => throughCodec({ node, sandbox: ev.sandboxId, kind: 'worker', at: t, event: ev }));
const KEYS = ['node', 'sandbox', 'kind', 'at', 'event', 'sandboxId', 'containerId', 'execId', 'exitStatus', 'exitedAt'];

function wellFormed(e: WorkerEvent) {
  expect(['exit', 'oom', 'vmExit']).toContain(e.kind);
  expect(typeof e.sandboxId).toBe('string');
  if (e.kind === 'exit') expect([e.exitStatus, e.exitedAt].every(Number.isFinite)).toBe(true);
}

describe('decodeWorkerFact', () => {
  test.prop(
    [
      fc.oneof(
        fc.uint8Array({ maxLength: 48 }),
        wireValue(KEYS).map((v) => encode(v)),
      ),
    ],
    { numRuns: RUNS },
  )('any bytes: an event, or InvalidArgument', (b) => {
    const r = verdict(() => decodeWorkerFact(b), { names: ['worker fact'] });
    if (r.ok) wellFormed(r.value);
  });
  test.prop([broken(record, wireValue(KEYS, 2))], { numRuns: RUNS })(
    'a valid fact with one field broken: an event, or InvalidArgument',
    ({ value }) => {
      const r = verdict(() => decodeWorkerFact(encode(value)), { names: ['worker fact'] });
      if (r.ok) wellFormed(r.value);
    },
  );
  test.prop([record], { numRuns: RUNS })('a valid fact gives back its event', (rec) => {
    expect(decodeWorkerFact(encode(rec))).toEqual((rec as { event: unknown }).event);
  });
  test('regression: an event kind sent as a MessagePack uint64 is InvalidArgument, not a TypeError', () => {
    const fact = encode({ event: { sandboxId: 's', kind: 2n ** 64n - 1n } });
    expect(() => decodeWorkerFact(fact)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});

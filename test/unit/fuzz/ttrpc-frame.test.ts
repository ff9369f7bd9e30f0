/**
 * The ttrpc frame decoder (src/shim/ttrpc/frame.ts `FrameDecoder`) on any byte stream, cut anywhere: it
 * never throws, and it yields exactly the frames a reference reading of the whole stream finds (10-byte
 * header, payload of the header's length; a payload over 4 MiB skipped and reported once as
 * oversized), whatever the chunking, idle exactly when no partial frame is held.
 */
import { describe, expect, vi } from 'vitest';
import { type Decoded, encodeHeader, FrameDecoder, HEADER_LENGTH, MAX_PAYLOAD } from '../../../src/shim/ttrpc/frame.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

/** A header and payload, or garbage: lengths near MAX_PAYLOAD announce more than the stream holds. */
const piece = fc.oneof(
  fc
    .record({
      length: fc.oneof(fc.nat(64), fc.constantFrom(MAX_PAYLOAD, MAX_PAYLOAD + 1, 0xffffffff)),
      streamId: fc.nat(0xffffffff),
      type: fc.nat(255),
      flags: fc.nat(255),
      fill: fc.nat(80),
    })
    .map((h) => Buffer.concat([encodeHeader(h), Buffer.alloc(Math.min(h.fill, h.length), 0xab)])),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
);

/** Read the whole stream at once, by the protocol. */
function reference(b: Buffer): { out: Decoded[]; rest: number } {
  const out: Decoded[] = [];
  let i = 0;
  while (b.length - i >= HEADER_LENGTH) {
    const header = {
      length: b.readUInt32BE(i),
      streamId: b.readUInt32BE(i + 4),
      type: b[i + 8]!,
      flags: b[i + 9]!,
    };
    if (b.length - i - HEADER_LENGTH < header.length) break;
    const payload = new Uint8Array(b.subarray(i + HEADER_LENGTH, i + HEADER_LENGTH + header.length));
    out.push(header.length > MAX_PAYLOAD ? { kind: 'oversized', header } : { kind: 'frame', header, payload });
    i += HEADER_LENGTH + header.length;
  }
  return { out, rest: b.length - i };
}

describe('FrameDecoder', () => {
  test.prop([fc.array(piece, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 })], { numRuns: RUNS })(
    'yields what a reading of the whole stream finds, however it is cut',
    (pieces, cuts) => {
      const wire = Buffer.concat(pieces);
      const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
      const dec = new FrameDecoder();
      const got: Decoded[] = [];
      let from = 0;
      for (const p of [...points, wire.length]) {
        got.push(...dec.push(wire.subarray(from, p)));
        from = p;
      }
      const want = reference(wire);
      expect(got).toEqual(want.out);
      expect(dec.idle).toBe(want.rest === 0);
    },
  );
});

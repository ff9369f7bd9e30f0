import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeHeader,
  type Decoded,
  encodeFrame,
  encodeHeader,
  FrameDecoder,
  FrameType,
  HEADER_LENGTH,
  MAX_PAYLOAD,
} from '../../src/shim/ttrpc/frame.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const frames = (ds: Decoded[]) =>
  ds.map((d) => (d.kind === 'frame' ? { ...d.header, payload: hex(d.payload) } : { ...d.header, oversized: true }));

describe('ttrpc frame header', () => {
  it('is 10 bytes big-endian: length u32, stream id u32, type u8, flags u8', () => {
    const h = { length: 0x0102, streamId: 0x01020305, type: FrameType.Response, flags: 0x04 };
    expect(hex(encodeHeader(h))).toBe('00000102' + '01020305' + '02' + '04');
    expect(decodeHeader(encodeHeader(h))).toEqual(h);
  });
  it('encodes a request frame as header then payload', () => {
    expect(hex(encodeFrame(1, FrameType.Request, new Uint8Array([0xaa, 0xbb])))).toBe('00000002000000010100aabb');
    expect(hex(encodeFrame(3, FrameType.Response, new Uint8Array()))).toBe('00000000000000030200');
  });
  it('refuses to encode a payload over 4 MiB, accepts exactly 4 MiB', () => {
    expect(MAX_PAYLOAD).toBe(4 * 1024 * 1024);
    expect(encodeFrame(1, 1, new Uint8Array(MAX_PAYLOAD)).length).toBe(HEADER_LENGTH + MAX_PAYLOAD);
    expect(() => encodeFrame(1, 1, new Uint8Array(MAX_PAYLOAD + 1))).toThrowError(
      expect.objectContaining({ code: 'ResourceExhausted' }),
    );
  });
});

describe('FrameDecoder', () => {
  const frameArb = fc.record({
    streamId: fc.integer({ min: 0, max: 0xffffffff }),
    type: fc.integer({ min: 0, max: 255 }),
    flags: fc.integer({ min: 0, max: 255 }),
    payload: fc.uint8Array({ maxLength: 300 }),
  });

  it('yields the same frames however the byte stream is split or coalesced', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (fs, cuts) => {
        const wire = Buffer.concat(fs.map((f) => encodeFrame(f.streamId, f.type, f.payload, f.flags)));
        const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
        const dec = new FrameDecoder();
        const out: Decoded[] = [];
        let from = 0;
        for (const p of [...points, wire.length]) {
          out.push(...dec.push(wire.subarray(from, p)));
          from = p;
        }
        const want = fs.map((f) => ({ ...f, length: f.payload.length, payload: hex(f.payload) }));
        expect(frames(out)).toEqual(want);
        expect(dec.idle).toBe(true);
      }),
    );
  });

  it('decodes byte by byte and holds a partial frame back', () => {
    const wire = encodeFrame(5, FrameType.Request, new Uint8Array([1, 2, 3]));
    const dec = new FrameDecoder();
    const out = [...wire].flatMap((b) => dec.push(new Uint8Array([b])));
    expect(frames(out)).toEqual([{ length: 3, streamId: 5, type: 1, flags: 0, payload: '010203' }]);
    expect(dec.push(wire.subarray(0, 11))).toEqual([]);
    expect(dec.idle).toBe(false);
  });

  it('copies payloads: reusing a pushed buffer does not change a decoded frame', () => {
    const wire = Buffer.from(encodeFrame(1, 1, new Uint8Array([7, 7])));
    const [d] = new FrameDecoder().push(wire);
    wire.fill(0);
    expect(d?.kind === 'frame' && hex(d.payload)).toBe('0707');
  });

  it('discards an oversized payload as it streams past, then reports it once, then decodes on', () => {
    const dec = new FrameDecoder();
    const big = MAX_PAYLOAD + 1;
    expect(dec.push(encodeHeader({ length: big, streamId: 7, type: 1, flags: 0 }))).toEqual([]);
    const chunk = new Uint8Array(64 * 1024);
    let sent = 0;
    while (big - sent > chunk.length) {
      expect(dec.push(chunk)).toEqual([]);
      sent += chunk.length;
    }
    const tail = Buffer.concat([chunk.subarray(0, big - sent), encodeFrame(9, 1, new Uint8Array([0x42]))]);
    expect(frames(dec.push(tail))).toEqual([
      { length: big, streamId: 7, type: 1, flags: 0, oversized: true },
      { length: 1, streamId: 9, type: 1, flags: 0, payload: '42' },
    ]);
  });
});

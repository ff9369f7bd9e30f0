import { describe, expect, it } from 'vitest';
import { decode, encode, MAX_PAYLOAD_BYTES } from '../../src/bus/codec.ts';

describe('codec', () => {
  it('round-trips plain values', () => {
    const v = { id: 'a', rootfs: [{ type: 'tmpfs', source: 't', options: ['size=1m'] }], n: 3, ok: true };
    expect(decode(encode(v))).toEqual(v);
  });
  it.each([
    ['reserved byte', [0xc1]],
    ['reserved byte inside a map', [0x81, 0xa1, 0x61, 0xc1]],
    ['truncated map', [0x82, 0xa1, 0x61]],
    ['two values', [0x01, 0x02]],
    ['text', [...Buffer.from('{"id":"x"}')]],
  ])('rejects %s with InvalidArgument', (_n, bytes) => {
    expect(() => decode(new Uint8Array(bytes))).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
  it('takes 0xc1 bytes inside binary data as data', () => {
    const v = { s: 'x', b: new Uint8Array([0xc1, 0xc1]) };
    expect(decode(encode(v))).toEqual({ s: 'x', b: Buffer.from([0xc1, 0xc1]) });
  });
  it('refuses oversized payloads before decoding', () => {
    expect(() => decode(new Uint8Array(MAX_PAYLOAD_BYTES + 1))).toThrowError(
      expect.objectContaining({ code: 'ResourceExhausted' }),
    );
  });
});

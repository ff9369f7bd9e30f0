/** MessagePack on the wire: plain pack/unpack, no shared records, so every message decodes on its own. */
import { Packr } from 'msgpackr';
import { err } from '../errors.ts';

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/** Largest payload a handler accepts; bigger ones get ResourceExhausted before decoding. */
export const MAX_PAYLOAD_BYTES = 1 << 20;

export const encode = (v: unknown): Uint8Array => packr.pack(v);

/** Decode bytes from the wire. Anything that is not one MessagePack value becomes InvalidArgument. */
export function decode(bytes: Uint8Array): unknown {
  if (bytes.length > MAX_PAYLOAD_BYTES) throw err.exhausted(`payload of ${bytes.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  if (bytes.length === 0) return undefined;
  try {
    const v = packr.unpack(bytes);
    return v;
  } catch (e) {
    throw err.invalid(`payload is not MessagePack: ${(e as Error).message}`);
  }
}

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
  let values: unknown[];
  try {
    values = packr.unpackMultiple(bytes) as unknown[];
  } catch (e) {
    throw err.invalid(`payload is not MessagePack: ${(e as Error).message}`);
  }
  if (values.length !== 1) throw err.invalid(`payload must be one MessagePack value, got ${values.length}`);
  // 0xc1 is "never used" in MessagePack; msgpackr hands back a marker object for it.
  if (hasMarker(values[0])) throw err.invalid('payload is not MessagePack: reserved byte 0xc1');
  return values[0];
}

function hasMarker(v: unknown, depth = 0): boolean {
  if (!v || typeof v !== 'object' || depth > 32) return false;
  if ((v as object).constructor?.name === 'C1Type') return true;
  return Object.values(v as object).some((x) => hasMarker(x, depth + 1));
}

/** MessagePack on the wire: plain pack/unpack, no shared records, so every message decodes on its own. */
import { C1, Packr } from 'msgpackr';
import { err } from '../errors.ts';

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * Largest payload a handler accepts (under NATS's default 1 MiB max_payload); bigger ones get
 * ResourceExhausted before decoding.
 */
export const MAX_PAYLOAD_BYTES = 512 * 1024;

export const encode = (v: unknown): Uint8Array => packr.pack(v);

/** Decode bytes from the wire. Anything that is not one MessagePack value becomes InvalidArgument. */
export function decode(bytes: Uint8Array): unknown {
  if (bytes.length > MAX_PAYLOAD_BYTES)
    throw err.exhausted(`payload of ${bytes.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  if (bytes.length === 0) throw err.invalid('payload is empty: a MessagePack map was expected');
  let values: unknown[];
  try {
    values = packr.unpackMultiple(bytes) as unknown[];
  } catch (e) {
    throw err.invalid(`payload is not MessagePack: ${(e as Error).message}`);
  }
  // 0xc1 is "never used" in MessagePack; msgpackr hands back a marker object for it (only for that byte, so a
  // payload without one needs no walk).
  if (bytes.includes(0xc1) && values.some((v) => hasMarker(v)))
    throw err.invalid('payload is not MessagePack: reserved byte 0xc1');
  if (values.length !== 1)
    throw err.invalid(`payload is not MessagePack: ${values.length} values where one map was expected`);
  return values[0];
}

function hasMarker(v: unknown): boolean {
  const todo: unknown[] = [v];
  while (todo.length) {
    const x = todo.pop();
    if (x === C1) return true;
    if (x && typeof x === 'object' && !(x instanceof Uint8Array)) todo.push(...(Object.values(x) as unknown[]));
  }
  return false;
}

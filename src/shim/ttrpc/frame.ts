/**
 * The ttrpc v1.1 frame codec (containerd/ttrpc `channel.go`, PROTOCOL.md). It is written here because no
 * maintained npm package implements ttrpc: the known implementations are Go (containerd/ttrpc), Rust
 * (ttrpc-rust) and Swift; "trpc" packages on npm are the unrelated tRPC.
 *
 * A frame is a 10-byte big-endian header, then the payload:
 *
 * | bytes | field                                                   |
 * |-------|---------------------------------------------------------|
 * | 0–3   | payload length, uint32 (header excluded), at most 4 MiB |
 * | 4–7   | stream id, uint32 (client streams are odd: 1, 3, 5, …)  |
 * | 8     | type: 1 request, 2 response, 3 data (ttrpc ≥ 1.2)       |
 * | 9     | flags (0 for unary calls)                               |
 *
 * {@link FrameDecoder} takes socket chunks of any size and returns each whole frame once its last byte has
 * arrived (a frame may span chunks; a chunk may hold many frames). A header announcing more than
 * {@link MAX_PAYLOAD} bytes is not buffered: its payload is discarded as it streams past, as the Go server
 * does, and then reported once as `{ kind: 'oversized' }` so that the server can answer that stream with
 * RESOURCE_EXHAUSTED. {@link encodeFrame} refuses to build an oversized frame (ResourceExhausted).
 */
import { err } from '../../errors.ts';

export const HEADER_LENGTH = 10;
export const MAX_PAYLOAD = 4 << 20;

export const FrameType = { Request: 0x01, Response: 0x02, Data: 0x03 } as const;

export interface FrameHeader {
  readonly length: number;
  readonly streamId: number;
  readonly type: number;
  readonly flags: number;
}

export type Decoded =
  | { readonly kind: 'frame'; readonly header: FrameHeader; readonly payload: Uint8Array }
  | { readonly kind: 'oversized'; readonly header: FrameHeader };

export function encodeHeader(h: FrameHeader): Uint8Array {
  const b = new Uint8Array(HEADER_LENGTH);
  const v = new DataView(b.buffer);
  v.setUint32(0, h.length);
  v.setUint32(4, h.streamId);
  v.setUint8(8, h.type);
  v.setUint8(9, h.flags);
  return b;
}

export function decodeHeader(b: Uint8Array): FrameHeader {
  const v = new DataView(b.buffer, b.byteOffset, HEADER_LENGTH);
  return { length: v.getUint32(0), streamId: v.getUint32(4), type: v.getUint8(8), flags: v.getUint8(9) };
}

/** Header and payload in one buffer (one socket write). @throws ResourceExhausted over {@link MAX_PAYLOAD}. */
export function encodeFrame(streamId: number, type: number, payload: Uint8Array, flags = 0): Uint8Array {
  if (payload.length > MAX_PAYLOAD) {
    throw err.exhausted(`message length ${payload.length} exceeds maximum message size of ${MAX_PAYLOAD}`);
  }
  const out = new Uint8Array(HEADER_LENGTH + payload.length);
  out.set(encodeHeader({ length: payload.length, streamId, type, flags }));
  out.set(payload, HEADER_LENGTH);
  return out;
}

/** Streaming decoder; one per connection. Payloads are copies, never views of the pushed chunks. */
export class FrameDecoder {
  readonly #head = new Uint8Array(HEADER_LENGTH);
  #headFill = 0;
  #header: FrameHeader | undefined;
  #body: Uint8Array | undefined; // undefined while discarding an oversized payload
  #fill = 0;

  /** The frames completed by `chunk`, in order. */
  push(chunk: Uint8Array): Decoded[] {
    const out: Decoded[] = [];
    let i = 0;
    for (;;) {
      if (this.#header === undefined) {
        const n = Math.min(HEADER_LENGTH - this.#headFill, chunk.length - i);
        this.#head.set(chunk.subarray(i, i + n), this.#headFill);
        this.#headFill += n;
        i += n;
        if (this.#headFill < HEADER_LENGTH) return out;
        this.#headFill = 0;
        this.#header = decodeHeader(this.#head);
        this.#body = this.#header.length > MAX_PAYLOAD ? undefined : new Uint8Array(this.#header.length);
        this.#fill = 0;
      }
      const h = this.#header;
      const n = Math.min(h.length - this.#fill, chunk.length - i);
      this.#body?.set(chunk.subarray(i, i + n), this.#fill);
      this.#fill += n;
      i += n;
      if (this.#fill < h.length) return out;
      out.push(this.#body ? { kind: 'frame', header: h, payload: this.#body } : { kind: 'oversized', header: h });
      this.#header = this.#body = undefined;
      if (i === chunk.length) return out;
    }
  }

  /** True between frames: no partial header or payload is held. */
  get idle(): boolean {
    return this.#header === undefined && this.#headFill === 0;
  }
}

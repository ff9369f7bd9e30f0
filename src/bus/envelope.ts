import type { WireError } from '../errors.ts';

/** Every reply on the bus: a result, or a coded error from the one catalogue (errors.ts). */
export type Envelope<T> = { ok: true; result: T } | { ok: false; error: WireError };

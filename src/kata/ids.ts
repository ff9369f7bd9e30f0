/** Container and sandbox id rules (kata-create-spec.md §1.1 step 3). */
import { err } from '../errors.ts';

/** Kata's pattern (`katautils.VerifyContainerID`). It needs at least two characters. */
export const ID_PATTERN = '^[a-zA-Z0-9][a-zA-Z0-9_.-]+$';
const ID_RE = new RegExp(ID_PATTERN);

/**
 * Corral's cap on id length. Kata has none; Corral puts ids into NATS subjects, KV keys and host
 * paths (`/run/vc/sbs/<id>`, socket names), where unbounded ids break limits far from the cause.
 */
export const MAX_ID_LENGTH = 128;

/**
 * Check a container or sandbox id and return it.
 * @throws InvalidArgument `ID cannot be blank`, `invalid container/sandbox ID (should match "<pattern>")`,
 *   or (Corral) `invalid container/sandbox ID (longer than 128 characters)`.
 */
export function verifyContainerId(id: string): string {
  if (typeof id !== 'string' || id === '') throw err.invalid('ID cannot be blank');
  if (!ID_RE.test(id)) throw err.invalid(`invalid container/sandbox ID (should match "${ID_PATTERN}")`);
  if (id.length > MAX_ID_LENGTH)
    throw err.invalid(`invalid container/sandbox ID (longer than ${MAX_ID_LENGTH} characters)`);
  return id;
}

/**
 * The one node-name rule: 1 to {@link NODE_NAME_MAX} ASCII letters, digits, `_` or `-`.
 *
 * A node name is a NATS subject token (`corral.v1.node.<node>.…`, `corral.v1.evt.<node>.…`), the key of
 * its entry in the KV bucket CORRAL_NODES and the first token of its snapshot keys in CORRAL_SNAPSHOTS,
 * part of the durable consumer name `corral-agent-<node>-worker-facts` (a directory name in JetStream's
 * store) and of each node's NKEY permissions. These characters are the ones all of those accept: no `.`
 * (it would add a subject level), no `*`/`>` (wildcards), no whitespace, and no `~` (NATS KV keys refuse
 * it, and subjects use it to stand for a dot in ids). The limit is 64 because the default name, the
 * host name's first label, is at most 63 characters (RFC 1035), and it keeps the consumer name and KV
 * keys short (JetStream names become file names; NATS recommends short ones).
 */
import { err } from '../errors.ts';

export const NODE_NAME_MAX = 64;
const NODE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export const isNodeName = (v: unknown): v is string => typeof v === 'string' && NODE_NAME.test(v);

/**
 * `v` when it is a valid node name.
 * @throws InvalidArgument naming `what` (e.g. `node name (--node / CORRAL_NODE)`) and the value.
 * @example nodeName('n1') // 'n1'
 */
export function nodeName(v: unknown, what = 'node name'): string {
  if (isNodeName(v)) return v;
  throw err.invalid(
    `${what} must be 1-${NODE_NAME_MAX} letters, digits, '_' or '-' (a NATS subject token and KV key), ` +
      `got ${typeof v === 'bigint' ? String(v) : JSON.stringify(v)}`,
  );
}

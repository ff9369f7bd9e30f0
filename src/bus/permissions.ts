/**
 * Security between nodes: one NKEY user per node, allowed only its own subjects; the fleet controller's
 * and the admin's users; and the `authorization { ... }` block that lists them in nats-server's config
 * (infra/nats/gen-creds.ts writes it; docs/decisions/0007-cluster-security.md says why).
 */
import { err } from '../errors.ts';
import { nodeName } from './node-name.ts';
import { EVENTS_STREAM } from './subjects.ts';

const q = (s: string) => JSON.stringify(s);

export interface Permissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

export interface AuthUser {
  /** The user's public NKEY (`U...`). */
  nkey: string;
  /** `node:<name>`, `controller` or `admin`: written as a comment. */
  role: string;
  /** Undefined: everything (the admin). */
  permissions?: Permissions;
}

const BUCKETS = { nodes: 'CORRAL_NODES', snapshots: 'CORRAL_SNAPSHOTS' } as const;

/**
 * What a node's agent and its two workers may publish and subscribe to. Writes are confined to the
 * node's own subjects: its Task API and worker subjects (`corral.v1.node.<node>.>`), its event log
 * records (`corral.v1.evt.<node>.>`), its registry key and its snapshot keys. Reads of the streams go
 * through the JetStream API, which nats-server 2.9 cannot confine to one node's records (a consumer's
 * filter is in the request body): a node may read other nodes' records, not write them.
 */
export function nodePermissions(node: string): Permissions {
  nodeName(node);
  const ev = EVENTS_STREAM;
  const kvNodes = `KV_${BUCKETS.nodes}`;
  const kvSnaps = `KV_${BUCKETS.snapshots}`;
  const durable = `corral-agent-${node}-worker-facts`;
  return {
    publish: {
      allow: [
        `corral.v1.node.${node}.>`, // its workers' ops, its process output
        `corral.v1.evt.${node}.>`, // its event log records (JetStream stores them)
        '_INBOX.>', // replies to whoever calls its Task API and worker ops
        `$KV.${BUCKETS.nodes}.${node}`, // its registry entry (heartbeat, reservations)
        `$KV.${BUCKETS.snapshots}.${node}.>`, // its actors' snapshots
        '$JS.API.INFO',
        '$JS.API.STREAM.INFO.*',
        '$JS.API.STREAM.NAMES',
        `$JS.API.STREAM.CREATE.${ev}`,
        `$JS.API.STREAM.UPDATE.${ev}`, // ensureEventStream
        `$JS.API.STREAM.PURGE.${ev}`, // retention of its deleted sandboxes' history
        `$JS.API.STREAM.CREATE.${kvNodes}`,
        `$JS.API.STREAM.CREATE.${kvSnaps}`, // first agent creates the buckets
        '$JS.API.STREAM.MSG.GET.*',
        '$JS.API.DIRECT.GET.>', // reads: records, KV gets
        '$JS.API.CONSUMER.CREATE.*',
        '$JS.API.CONSUMER.CREATE.*.>', // ordered consumers (reads, KV keys)
        `$JS.API.CONSUMER.DURABLE.CREATE.${ev}.${durable}`, // its worker-facts feed
        '$JS.API.CONSUMER.INFO.*.*',
        '$JS.API.CONSUMER.DELETE.*.*',
        '$JS.API.CONSUMER.MSG.NEXT.*.*',
        `$JS.ACK.${ev}.${durable}.>`,
        '$JS.FC.>', // flow control of push consumers (KV watch)
      ],
    },
    subscribe: { allow: [`corral.v1.node.${node}.>`, '_INBOX.>'] },
  };
}

/** The fleet controller: the fleet subject, every node's createInline, the registry, lost marks. */
export function controllerPermissions(): Permissions {
  return {
    publish: {
      allow: [
        'corral.v1.node.*.task.createInline',
        'corral.v1.node.*.task.delete',
        'corral.v1.node.*.task.kill',
        'corral.v1.node.*.task.list',
        'corral.v1.fleet.>',
        'corral.v1.evt.*.*.lost',
        '_INBOX.>',
        `$KV.${BUCKETS.nodes}.*`,
        '$JS.API.>',
        '$JS.FC.>',
        '$JS.ACK.>',
      ],
    },
    subscribe: { allow: ['corral.v1.fleet.>', '_INBOX.>'] },
  };
}

/** The `authorization { users: [...] }` block for nats-server's config. */
export function authorizationBlock(users: AuthUser[]): string {
  const list = (xs: string[]) => `[${xs.map(q).join(', ')}]`;
  const lines = ['authorization {', '  users: ['];
  for (const u of users) {
    if (!/^U[A-Z2-7]{55}$/.test(u.nkey)) throw err.invalid(`not a user public NKEY: ${u.nkey}`);
    lines.push(`    # ${u.role}`);
    if (!u.permissions) {
      lines.push(`    { nkey: ${q(u.nkey)} }`);
      continue;
    }
    lines.push(`    { nkey: ${q(u.nkey)}, permissions: {`);
    lines.push(`        publish: { allow: ${list(u.permissions.publish.allow)} }`);
    lines.push(`        subscribe: { allow: ${list(u.permissions.subscribe.allow)} }`);
    lines.push('    } }');
  }
  lines.push('  ]', '}', '');
  return lines.join('\n');
}

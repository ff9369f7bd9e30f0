/**
 * Actor snapshots in the JetStream KV bucket CORRAL_SNAPSHOTS, one key per task
 * (`<node>.<taskId>`), each with the stream sequence it covers: recovery restores the snapshot and
 * replays only the log after it. Saved at quiet points (no effect in flight), deleted with the task.
 */
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { StartingPoint } from '../domain/snapshot.ts';
import { err } from '../errors.ts';
import { decode, encode } from './codec.ts';
import { drainConsumer } from './drain-consumer.ts';
import { nodeName } from './node-name.ts';
import { jsPublish } from './reply-mux.ts';

export const SNAPSHOT_BUCKET = 'CORRAL_SNAPSHOTS';
/** A save not acknowledged within this fails (nats.js's KV default timeout). */
const SAVE_TIMEOUT_MS = 5000;

const KV_TOKEN = /^[A-Za-z0-9_=-]{1,256}$/;
/** A task id as one KV key token. */
function kvToken(id: string): string {
  const t = id.replaceAll('.', '=');
  if (!KV_TOKEN.test(t)) throw err.invalid(`invalid task id for a snapshot key: ${JSON.stringify(id)}`);
  return t;
}

/** A replay starting point (`seq`: the last record it covers) plus when the task was created. */
export interface TaskSnapshot extends StartingPoint {
  createdAt: number;
}

export class Snapshots {
  private constructor(
    private nc: NatsConnection,
    private kv: KV,
    private node: string,
    private onRemoveFailed?: (taskId: string, e: unknown) => void,
  ) {}

  /**
   * @param onRemoveFailed told when a deleted task's snapshot could not be purged (log it: recovery skips
   *   the snapshot of a task the log says is deleted, but not once retention has purged that record).
   */
  static async open(
    nc: NatsConnection,
    node: string,
    replicas = 1,
    onRemoveFailed?: (taskId: string, e: unknown) => void,
  ): Promise<Snapshots> {
    try {
      const kv = await new Kvm(nc).create(SNAPSHOT_BUCKET, { history: 1, replicas });
      return new Snapshots(nc, kv, node, onRemoveFailed);
    } catch (e) {
      throw err.unavailable(`cannot open the snapshot bucket ${SNAPSHOT_BUCKET}: ${(e as Error).message}`, e);
    }
  }

  /** `<node>.<taskId>`, a task id's dots written `=` (KV keys allow `-/_=.` and alphanumerics; ids cannot hold `=`). */
  private key(taskId: string) {
    return `${nodeName(this.node)}.${kvToken(taskId)}`;
  }

  /**
   * A put, published to the key's subject as kv.put does, through the reply mux (reply-mux.ts): nats.js's
   * own request builds a RequestError at every reply, and a save comes with every quiet state.
   */
  async save(s: TaskSnapshot): Promise<void> {
    await jsPublish(this.nc, `$KV.${SNAPSHOT_BUCKET}.${this.key(s.taskId)}`, encode(s), { timeoutMs: SAVE_TIMEOUT_MS });
  }
  /** Purge a task's snapshot. Never rejects (callers fire and forget): a failure goes to `onRemoveFailed`. */
  async remove(taskId: string): Promise<void> {
    await this.kv.purge(this.key(taskId)).catch((e: unknown) => this.onRemoveFailed?.(taskId, e));
  }

  /**
   * Every snapshot of this node, read as the bucket's stream in batches (the last message per key; a purged
   * key's last message is its purge marker, skipped): one pull per 1,000 keys instead of a get per key.
   */
  async all(): Promise<TaskSnapshot[]> {
    const out: TaskSnapshot[] = [];
    const c = await jetstream(this.nc).consumers.get(`KV_${SNAPSHOT_BUCKET}`, {
      filter_subjects: `$KV.${SNAPSHOT_BUCKET}.${nodeName(this.node)}.>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    try {
      await drainConsumer(c, (m) => {
        if (!m.headers?.get('KV-Operation') && m.data.length) out.push(decode(m.data) as TaskSnapshot);
      });
    } finally {
      await c.delete().catch(() => {
        // An ordered consumer left behind expires on its own (inactive threshold): nothing to report.
      });
    }
    return out;
  }
}

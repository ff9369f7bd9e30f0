/**
 * Actor snapshots in the JetStream KV bucket CORRAL_SNAPSHOTS, one key per task
 * (`<node>.<taskId>`), each with the stream sequence it covers: recovery restores the snapshot and
 * replays only the log after it. Saved at quiet points (no effect in flight), deleted with the task.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { StartingPoint } from '../domain/snapshot.ts';
import { err } from '../errors.ts';
import { decode, encode } from './codec.ts';
import { nodeName } from './node-name.ts';

export const SNAPSHOT_BUCKET = 'CORRAL_SNAPSHOTS';

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
      return new Snapshots(kv, node, onRemoveFailed);
    } catch (e) {
      throw err.unavailable(`cannot open the snapshot bucket ${SNAPSHOT_BUCKET}: ${(e as Error).message}`, e);
    }
  }

  /** `<node>.<taskId>`, a task id's dots written `=` (KV keys allow `-/_=.` and alphanumerics; ids cannot hold `=`). */
  private key(taskId: string) {
    return `${nodeName(this.node)}.${kvToken(taskId)}`;
  }

  async save(s: TaskSnapshot): Promise<void> {
    await this.kv.put(this.key(s.taskId), encode(s));
  }
  /** Purge a task's snapshot. Never rejects (callers fire and forget): a failure goes to `onRemoveFailed`. */
  async remove(taskId: string): Promise<void> {
    await this.kv.purge(this.key(taskId)).catch((e: unknown) => this.onRemoveFailed?.(taskId, e));
  }

  /** Every snapshot of this node. */
  async all(): Promise<TaskSnapshot[]> {
    const out: TaskSnapshot[] = [];
    const keys = await this.kv.keys(`${nodeName(this.node)}.>`);
    for await (const k of keys) {
      const e = await this.kv.get(k);
      if (e && e.operation === 'PUT' && e.value.length) out.push(decode(e.value) as TaskSnapshot);
    }
    return out;
  }
}

/**
 * The simulated JetStream event log of one node (bus/eventlog.ts's `EventAppender`, and the reader
 * recovery takes): records in stream order with their sequence. Appends of one sandbox land in call
 * order (as the real log's lanes keep them); an append can be slow, can meet a failover window (it
 * waits, and fails with Unavailable past its deadline, not written), and can be written although its
 * ack is lost (the caller sees Unavailable: the record is there all the same).
 */
import { err } from '../src/errors.ts';
import type { EventRecord } from '../src/bus/eventlog-reader.ts';
import type { EventAppender, HoldOptions } from '../src/bus/eventlog.ts';
import type { Scheduler } from './sched.ts';

/** As the real log: an append not acknowledged within this long fails. */
const APPEND_DEADLINE_MS = 30_000;

export class SimLog {
  readonly records: EventRecord[] = [];
  /** JetStream has no leader until then. */
  private downUntil = -1;
  /** Nats-Msg-Id → sequence: an append sent again under its id is stored once (JetStream's dedupe). */
  private readonly ids = new Map<string, number>();
  /** An append without a msgId gets one per call, kept across its attempts, as eventlog.ts does. */
  private autoIds = 0;
  /** Chance that an append is stored but its ack lost. */
  ackLoss = 0;

  constructor(
    readonly node: string,
    private readonly s: Scheduler,
  ) {}

  failover(forMs: number): void {
    this.downUntil = Math.max(this.downUntil, this.s.now + forMs);
  }

  /** The writer one agent incarnation (or a worker) appends through: nothing of a dead one lands. */
  appender(alive: () => boolean): EventAppender {
    // Lanes are the writer's own (eventlog.ts keeps them per process): a dead incarnation's held append
    // never holds up the next one's.
    const lanes = new Map<string, Promise<unknown>>();
    return {
      append: (sandbox, kind, data, msgId, hold) => {
        const prev = lanes.get(sandbox) ?? Promise.resolve();
        const p = prev.then(
          () => this.one(sandbox, kind, data, alive, msgId, hold),
          () => this.one(sandbox, kind, data, alive, msgId, hold),
        );
        lanes.set(sandbox, p);
        return p;
      },
    };
  }

  private one(
    sandbox: string,
    kind: string,
    data: Record<string, unknown>,
    alive: () => boolean,
    msgId?: string,
    hold?: HoldOptions,
  ): Promise<number> {
    const s = this.s;
    const deadline = s.now + APPEND_DEADLINE_MS;
    // Held (eventlog.ts): past the deadline it keeps the lane and goes on, until stored or let go.
    const holding = () => hold !== undefined && !hold.signal?.aborted && !hold.stop?.();
    const id = msgId ?? `${this.node}:auto:${++this.autoIds}`;
    return new Promise<number>((resolve, reject) => {
      const attempt = () => {
        // never lands; frees the lane; not retried (a dead process tries nothing)
        if (!alive()) return void reject(err.cancelled('the process is gone'));
        if (s.now < this.downUntil) {
          if (this.downUntil >= deadline && !holding())
            return void s.at(deadline - s.now, `${this.node}: append ${kind} of ${sandbox} fails (no leader)`, () =>
              reject(err.unavailable('event log append failed: no JetStream leader (simulated)')),
            );
          return void s.at(this.downUntil - s.now, '', attempt);
        }
        const stored = this.ids.get(id);
        if (stored !== undefined) return void s.at(s.between(0, 3), '', () => resolve(stored));
        const seq = this.records.length + 1;
        this.ids.set(id, seq);
        this.records.push({
          seq,
          node: this.node,
          sandbox,
          kind,
          at: Date.now(),
          subject: `corral.v1.evt.${this.node}.${sandbox}.${kind}`,
          ...structuredClone(data),
        });
        if (process.env.SIM_RECORDS === '1')
          s.note(`${this.node}: #${seq} ${sandbox} ${kind} ${JSON.stringify(data).slice(0, 160)}`);
        if (s.chance(this.ackLoss))
          return void s.at(APPEND_DEADLINE_MS, `${this.node}: ack of #${seq} ${kind} lost`, () =>
            holding() && alive()
              ? attempt() // sent again under its msgId: the first copy's sequence comes back
              : reject(err.unavailable('event log append failed: not acknowledged (simulated)')),
          );
        s.at(s.between(0, 3), '', () => resolve(seq));
      };
      s.at(s.between(0, 3), '', attempt);
    });
  }

  read(): Promise<EventRecord[]> {
    return Promise.resolve(this.records.map((r) => structuredClone(r)));
  }
}

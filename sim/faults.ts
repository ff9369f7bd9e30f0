/**
 * What can go wrong in a simulated run, all drawn from the run's one generator: message delays and
 * losses (requests to workers, their replies), worker op failures, and the planted bugs of
 * `--self-test` (mutation hooks at the seams between the real code and the simulated world).
 */
import { err, type CorralError } from '../src/errors.ts';
import type { WorkerKind } from '../src/domain/ops.ts';
import type { Scheduler } from './sched.ts';

/** Known bugs the self-test plants, one at a time, to show the invariants catch them. */
export const MUTATIONS = ['skip-compensation', 'double-reply', 'keep-reservation', 'new-opid-on-reissue'] as const;
export type Mutation = (typeof MUTATIONS)[number];

const UNDO_OPS = new Set(['unmountAll', 'removeTree', 'removeUser', 'stop']);
const MAKING_OPS = new Set(['mountRootfs', 'bind', 'mkdir', 'createUser', 'boot', 'startProcess']);

export class Faults {
  /** Chance that one message (a request or a reply) is lost. */
  lose: number;
  /** Chance that a making op fails (Internal: outcome unknown, the step is compensated). */
  fail: number;
  private reissue = 0;

  constructor(
    private readonly s: Scheduler,
    readonly mutation: Mutation | undefined,
  ) {
    this.lose = s.pick([0, 0.002, 0.01, 0.03]);
    this.fail = s.pick([0, 0.02, 0.08]);
  }

  /** No more losses or failures (the run's end: what is left is removed and checked). */
  calm(): void {
    this.lose = 0;
    this.fail = 0;
  }

  message(): { requestLost: boolean; replyLost: boolean; delay: number } {
    const slow = this.s.chance(0.05);
    return {
      requestLost: this.s.chance(this.lose),
      replyLost: this.s.chance(this.lose),
      delay: slow ? this.s.between(200, 3000) : this.s.between(1, 20),
    };
  }

  opFails(_kind: WorkerKind, op: string): CorralError | undefined {
    if (MAKING_OPS.has(op) && this.s.chance(this.fail)) return err.internal(`${op} failed (simulated)`);
    if (UNDO_OPS.has(op) && this.s.chance(this.fail / 4)) return err.unavailable(`${op} failed (simulated)`);
    return undefined;
  }

  /** The mutation hooks: identity unless that bug is planted. */
  readonly mutate = {
    opId: (opId: string): string => (this.mutation === 'new-opid-on-reissue' ? `${opId}#${++this.reissue}` : opId),
    skipCompensation: (_kind: WorkerKind, op: string): boolean =>
      this.mutation === 'skip-compensation' && UNDO_OPS.has(op) && this.s.chance(0.5),
    doubleReply: (): boolean => this.mutation === 'double-reply' && this.s.chance(0.3),
    keepReservation: (): boolean => this.mutation === 'keep-reservation' && this.s.chance(0.5),
  };
}

import { describe, expect, it } from 'vitest';
import {
  free,
  shortfall,
  sumReservations,
  withHeld,
  withoutReservation,
  withoutUnheld,
  withReservation,
} from '../../src/fleet/capacity.ts';
import { withHeartbeat, withState, type StateAction } from '../../src/fleet/state.ts';
import type { NodeEntry, NodeState } from '../../src/fleet/types.ts';
import { expectError } from './kata/expect-error.ts';

const entry = (o: Partial<NodeEntry> = {}): NodeEntry => ({
  node: 'n1',
  state: 'ready',
  labels: {},
  capacity: { vcpus: 4, memoryMiB: 8192, sandboxes: 3 },
  used: { vcpus: 0, memoryMiB: 0, sandboxes: 0 },
  heartbeatAt: 1,
  version: 'v',
  reservations: {},
  registeredAt: 1,
  ...o,
});
const r = (id: string, vcpus = 1, memoryMiB = 2048, ref = 'c1:1') => ({ id, vcpus, memoryMiB, ref });

describe('reservations', () => {
  it('adds to used and records who reserved', () => {
    const e = withReservation(entry(), r('t1'), 42)!;
    expect(e.used).toEqual({ vcpus: 1, memoryMiB: 2048, sandboxes: 1 });
    expect(e.reservations.t1).toEqual({ vcpus: 1, memoryMiB: 2048, at: 42, ref: 'c1:1' });
    expect(free(e)).toEqual({ vcpus: 3, memoryMiB: 6144, sandboxes: 2 });
  });

  it('the same reservation by the same writer again is nothing to write (a lost reply retried)', () => {
    const e = withReservation(entry(), r('t1'), 1)!;
    expect(withReservation(e, r('t1'), 2)).toBeUndefined();
  });

  it.each<[string, NodeEntry, ReturnType<typeof r>, string, RegExp]>([
    [
      'the id is reserved by another writer',
      withReservation(entry(), r('t1'), 1)!,
      r('t1', 1, 2048, 'c2:9'),
      'AlreadyExists',
      /task t1 is already placed on node n1/,
    ],
    [
      'cordoned',
      entry({ state: 'cordoned' }),
      r('t1'),
      'ResourceExhausted',
      /node n1 is cordoned: it takes no new sandboxes/,
    ],
    ['lost', entry({ state: 'lost' }), r('t1'), 'ResourceExhausted', /is lost/],
    ['too many vCPUs', entry(), r('t1', 5), 'ResourceExhausted', /node n1 is full: 5 vCPUs wanted, 4 free/],
    [
      'too much memory',
      entry({ used: { vcpus: 0, memoryMiB: 8000, sandboxes: 0 } }),
      r('t1'),
      'ResourceExhausted',
      /2048 MiB wanted, 192 free/,
    ],
    [
      'no sandbox slot',
      entry({ used: { vcpus: 0, memoryMiB: 0, sandboxes: 3 } }),
      r('t1', 0, 0),
      'ResourceExhausted',
      /sandboxes 3\/3/,
    ],
    ['a negative demand', entry(), r('t1', -1), 'InvalidArgument', /vcpus must be a non-negative integer/],
  ])('refused: %s', async (_n, e, req, code, msg) => {
    await expectError(() => withReservation(e, req, 1), code as never, msg);
  });

  it('fills exactly to capacity, then refuses', () => {
    let e = entry();
    for (const id of ['a', 'b']) e = withReservation(e, r(id, 2, 4096), 1)!;
    expect(free(e)).toEqual({ vcpus: 0, memoryMiB: 0, sandboxes: 1 });
    expect(shortfall(e, { vcpus: 0, memoryMiB: 0 })).toBeUndefined();
    expect(shortfall(e, { vcpus: 1, memoryMiB: 0 })).toBe('1 vCPUs wanted, 0 free');
  });

  it("release removes it; a missing id, or another writer's with a ref, is nothing to write", () => {
    const e = withReservation(withReservation(entry(), r('a'), 1)!, r('b', 2, 1024, 'c2:1'), 1)!;
    const a = withoutReservation(e, 'a')!;
    expect(a.used).toEqual({ vcpus: 2, memoryMiB: 1024, sandboxes: 1 });
    expect(Object.keys(a.reservations)).toEqual(['b']);
    expect(withoutReservation(a, 'a')).toBeUndefined();
    expect(withoutReservation(a, 'b', 'c1:1')).toBeUndefined();
    expect(withoutReservation(a, 'b', 'c2:1')!.used).toEqual({ vcpus: 0, memoryMiB: 0, sandboxes: 0 });
    expect(sumReservations(e.reservations)).toEqual(e.used);
  });
});

describe('held reservations (the agent restores what vanished)', () => {
  it('puts back a missing held reservation as it was and recomputes used; leaves others alone', () => {
    const e1 = withReservation(entry(), r('t1'), 10)!;
    const e2 = withReservation(e1, r('t2', 2, 1024, 'c2:7'), 11)!;
    const lost = withoutReservation(e2, 't2')!; // a lost update dropped t2
    const held = new Map([['t2', e2.reservations.t2!]]);
    const healed = withHeld(lost, held);
    expect(healed.reservations).toEqual(e2.reservations);
    expect(healed.used).toEqual({ vcpus: 3, memoryMiB: 3072, sandboxes: 2 });
    expect(withHeld(e2, held)).toBe(e2); // nothing missing: the same entry, no write
    expect(withHeld(e2, new Map())).toBe(e2);
  });

  it('drops reservations nobody holds once they are older than the cut; young ones may be a create on its way', () => {
    const e = withReservation(
      withReservation(withReservation(entry(), r('old'), 10)!, r('young'), 500)!,
      r('mine'),
      10,
    )!;
    const held = new Map([['mine', e.reservations.mine!]]);
    const pruned = withoutUnheld(e, held, 100);
    expect(Object.keys(pruned.reservations).sort()).toEqual(['mine', 'young']);
    expect(pruned.used).toEqual({ vcpus: 2, memoryMiB: 4096, sandboxes: 2 });
    expect(withoutUnheld(pruned, held, 100)).toBe(pruned); // nothing more to drop: the same entry
  });
});

describe('state transitions', () => {
  it.each<[string, NodeState, StateAction, NodeState | undefined, string?]>([
    ['cordon a ready node', 'ready', 'cordon', 'cordoned'],
    ['cordon a cordoned node: nothing', 'cordoned', 'cordon', undefined],
    ['cordon a draining node: stays draining', 'draining', 'cordon', undefined],
    ['uncordon', 'cordoned', 'uncordon', 'ready'],
    ['uncordon a draining node', 'draining', 'uncordon', 'ready'],
    ['uncordon a ready node: nothing', 'ready', 'uncordon', undefined],
    ['drain a ready node', 'ready', 'drain', 'draining'],
    ['drain a cordoned node', 'cordoned', 'drain', 'draining'],
    ['drained: draining ends cordoned', 'draining', 'drained', 'cordoned'],
    ['drained when uncordoned meanwhile: nothing', 'ready', 'drained', undefined],
  ])('%s', (_n, from, action, to) => {
    const e = withState(entry({ state: from }), action);
    expect(e?.state).toBe(to);
  });

  it('on a lost node, cordon/uncordon set the state it returns to; drain is refused', async () => {
    const lost = entry({ state: 'lost', lostFrom: 'ready', lostAt: 5 });
    const c = withState(lost, 'cordon')!;
    expect([c.state, c.lostFrom]).toEqual(['lost', 'cordoned']);
    expect(withState(lost, 'uncordon')).toBeUndefined();
    await expectError(() => withState(lost, 'drain'), 'FailedPrecondition', /node n1 is lost/);
  });

  it('a heartbeat brings a lost node back to the state it had', () => {
    const e = withHeartbeat(entry({ state: 'lost', lostFrom: 'cordoned', lostAt: 5 }), 99);
    expect(e).toMatchObject({ state: 'cordoned', heartbeatAt: 99 });
    expect('lostAt' in e || 'lostFrom' in e).toBe(false);
    expect(withHeartbeat(entry({ state: 'draining' }), 7).state).toBe('draining');
  });
});

import { describe, expect, it } from 'vitest';
import { DEFAULT_LOST_AFTER_MS, nodesToMarkLost } from '../../src/fleet/liveness.ts';
import type { NodeState } from '../../src/fleet/types.ts';

const e = (node: string, state: NodeState, heartbeatAt: number) => ({ node, state, heartbeatAt });
const NOW = 1_000_000;

describe('nodesToMarkLost', () => {
  it.each<[string, ReturnType<typeof e>[], number | undefined, string[]]>([
    ['nothing registered', [], undefined, []],
    ['a fresh heartbeat is alive', [e('a', 'ready', NOW - 100)], undefined, []],
    ['exactly the bound is still alive', [e('a', 'ready', NOW - 3000)], undefined, []],
    ['one ms past the bound is lost', [e('a', 'ready', NOW - 3001)], undefined, ['a']],
    [
      'cordoned and draining nodes are lost too',
      [e('a', 'cordoned', NOW - 5000), e('b', 'draining', NOW - 5000)],
      undefined,
      ['a', 'b'],
    ],
    ['a lost node is not marked again', [e('a', 'lost', NOW - 60_000)], undefined, []],
    ['a heartbeat from the future (clock skew) is alive', [e('a', 'ready', NOW + 2000)], undefined, []],
    ['a configured bound', [e('a', 'ready', NOW - 1500), e('b', 'ready', NOW - 500)], 1000, ['a']],
    [
      'sorted by name, only the stale ones',
      [e('c', 'ready', 0), e('a', 'ready', NOW - 10_000), e('b', 'ready', NOW)],
      undefined,
      ['a', 'c'],
    ],
  ])('%s', (_name, entries, bound, want) => {
    expect(nodesToMarkLost(entries, NOW, bound)).toEqual(want);
  });

  it('defaults to 3 s', () => expect(DEFAULT_LOST_AFTER_MS).toBe(3000));
});

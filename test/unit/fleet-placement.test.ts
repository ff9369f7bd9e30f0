import { describe, expect, it } from 'vitest';
import { headroom, labelsMatch, place, whyUnplaceable, type Policy } from '../../src/fleet/placement.ts';
import { AssumeCache } from '../../src/fleet/assume-cache.ts';
import type { NodeEntry, NodeState } from '../../src/fleet/types.ts';

/** A node with 8 vCPUs, 16384 MiB and 10 sandbox slots unless said otherwise. */
const n = (
  node: string,
  used: [number, number, number] = [0, 0, 0],
  o: { state?: NodeState; labels?: Record<string, string>; cap?: [number, number, number] } = {},
) => {
  const cap = o.cap ?? [8, 16384, 10];
  return {
    node,
    state: o.state ?? 'ready',
    labels: o.labels ?? {},
    capacity: { vcpus: cap[0], memoryMiB: cap[1], sandboxes: cap[2] },
    used: { vcpus: used[0], memoryMiB: used[1], sandboxes: used[2] },
  };
};
const req = (vcpus = 1, memoryMiB = 2048, labels: Record<string, string> = {}) => ({ vcpus, memoryMiB, labels });

describe('place', () => {
  it.each<[string, ReturnType<typeof req>, ReturnType<typeof n>[], Policy, string[]]>([
    ['no nodes: no candidates', req(), [], 'spread', []],
    [
      'spread: most free first',
      req(),
      [n('a', [4, 8192, 4]), n('b', [1, 2048, 1]), n('c', [6, 12288, 6])],
      'spread',
      ['b', 'a', 'c'],
    ],
    [
      'binpack: least free that fits first',
      req(),
      [n('a', [4, 8192, 4]), n('b', [1, 2048, 1]), n('c', [6, 12288, 6])],
      'binpack',
      ['c', 'a', 'b'],
    ],
    ['ties broken by name (spread)', req(), [n('c'), n('a'), n('b')], 'spread', ['a', 'b', 'c']],
    ['ties broken by name (binpack)', req(), [n('c'), n('a'), n('b')], 'binpack', ['a', 'b', 'c']],
    [
      'not ready nodes are filtered',
      req(),
      [
        n('a', [0, 0, 0], { state: 'cordoned' }),
        n('b', [0, 0, 0], { state: 'draining' }),
        n('c', [0, 0, 0], { state: 'lost' }),
        n('d', [7, 0, 7]),
      ],
      'spread',
      ['d'],
    ],
    ['a node without room for the vCPUs is filtered', req(2), [n('a', [7, 0, 1]), n('b', [6, 0, 1])], 'spread', ['b']],
    [
      'a node without room for the memory is filtered',
      req(1, 4096),
      [n('a', [0, 14000, 1]), n('b', [0, 12288, 1])],
      'binpack',
      ['b'],
    ],
    [
      'a node with every sandbox slot taken is filtered',
      req(1, 1),
      [n('a', [0, 0, 10]), n('b', [0, 0, 9])],
      'spread',
      ['b'],
    ],
    ['exactly full after placing still fits', req(1, 2048), [n('a', [7, 14336, 9])], 'spread', ['a']],
    [
      'labels must all match',
      req(1, 2048, { zone: 'a', gpu: 'yes' }),
      [
        n('x', [0, 0, 0], { labels: { zone: 'a' } }),
        n('y', [0, 0, 0], { labels: { zone: 'a', gpu: 'yes', extra: '1' } }),
        n('z', [0, 0, 0], { labels: { zone: 'b', gpu: 'yes' } }),
      ],
      'spread',
      ['y'],
    ],
    [
      'spread is relative to size: the bottleneck dimension decides',
      req(1, 1024),
      [
        n('big', [8, 8192, 8], { cap: [32, 65536, 40] }), // 23/32 vCPU left after: 0.72
        n('small', [1, 1024, 1], { cap: [4, 8192, 10] }), // 2/4 vCPU left after: 0.5
      ],
      'spread',
      ['big', 'small'],
    ],
    [
      'binpack on mixed sizes: the fuller one first',
      req(1, 1024),
      [n('big', [8, 8192, 8], { cap: [32, 65536, 40] }), n('small', [1, 1024, 1], { cap: [4, 8192, 10] })],
      'binpack',
      ['small', 'big'],
    ],
    [
      'zero demand (pod container) still needs a slot',
      req(0, 0),
      [n('a', [8, 16384, 10]), n('b', [8, 16384, 9])],
      'spread',
      ['b'],
    ],
  ])('%s', (_name, r, nodes, policy, want) => {
    expect(place(r, nodes, policy)).toEqual(want);
  });

  it('is deterministic whatever the input order', () => {
    const nodes = Array.from({ length: 20 }, (_, i) =>
      n(`n${String(i).padStart(2, '0')}`, [i % 3, 2048 * (i % 3), i % 3]),
    );
    const a = place(req(), nodes, 'spread');
    expect(place(req(), [...nodes].reverse(), 'spread')).toEqual(a);
    expect(a.slice(0, 7)).toEqual(['n00', 'n03', 'n06', 'n09', 'n12', 'n15', 'n18']);
  });

  it('headroom is the smallest remaining fraction', () => {
    expect(headroom(n('a', [4, 0, 0]), { vcpus: 2, memoryMiB: 0 })).toBeCloseTo(2 / 8);
    expect(headroom(n('a', [0, 0, 9]), { vcpus: 0, memoryMiB: 0 })).toBe(0);
  });

  it('labelsMatch', () => {
    expect(labelsMatch({}, {})).toBe(true);
    expect(labelsMatch({ a: '1' }, { a: '1', b: '2' })).toBe(true);
    expect(labelsMatch({ a: '1' }, { a: '2' })).toBe(false);
    expect(labelsMatch({ toString: 'x' }, {})).toBe(false);
  });

  it('whyUnplaceable names the reasons', () => {
    const m = whyUnplaceable(req(2, 2048, { zone: 'a' }), [
      n('a', [0, 0, 0], { state: 'cordoned', labels: { zone: 'a' } }),
      n('b', [0, 0, 0], { state: 'lost' }),
      n('c'),
      n('d', [7, 0, 1], { labels: { zone: 'a' } }),
    ]);
    expect(m).toBe(
      'no node can take a sandbox of 2 vCPUs, 2048 MiB, labels zone=a: 4 nodes, 2 not ready (1 cordoned, 1 lost), ' +
        '1 without the labels, 1 full (d: 2 vCPUs wanted, 1 free)',
    );
  });
});

describe('AssumeCache (a replica spreads its own concurrent requests)', () => {
  it('adds chosen-but-unstored reservations to used until forgotten', () => {
    const entries = [n('a'), n('b')] as unknown as NodeEntry[]; // placement's nodes: the fields the cache reads
    const c = new AssumeCache();
    c.assume('a', 'r1', { vcpus: 2, memoryMiB: 1024 });
    c.assume('a', 'r2', { vcpus: 1, memoryMiB: 512 });
    expect(c.apply(entries).map((e) => [e.node, e.used])).toEqual([
      ['a', { vcpus: 3, memoryMiB: 1536, sandboxes: 2 }],
      ['b', { vcpus: 0, memoryMiB: 0, sandboxes: 0 }],
    ]);
    c.forget('a', 'r1');
    c.forget('a', 'r2');
    expect(c.apply(entries)).toEqual(entries);
  });
});

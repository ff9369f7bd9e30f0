import { describe, expect, it } from 'vitest';
import { decideReconcile, type Observed } from '../../src/agent/reconcile-decide.ts';

const R = '/run/corral';
const none: Observed = { mounts: [], vms: [], users: [], sandboxDirs: [] };
const live = (...ids: string[]) => new Set(ids);

describe('decideReconcile', () => {
  it.each<[string, Partial<Observed>, Set<string>, unknown[]]>([
    ['nothing on the host, nothing live', {}, live(), []],
    [
      'everything of a live sandbox is kept',
      {
        mounts: [`${R}/sandboxes/a/shared/a/rootfs`],
        vms: [{ sandboxId: 'a', pid: 10 }],
        users: [{ name: 'corral-00001', uid: 1001, sandboxId: 'a' }],
        sandboxDirs: ['a'],
      },
      live('a'),
      [],
    ],
    [
      'an orphaned VM is stopped',
      { vms: [{ sandboxId: 'gone', pid: 11 }] },
      live(),
      [{ kind: 'stopVm', sandboxId: 'gone', pid: 11 }],
    ],
    [
      'orphaned mounts are unmounted deepest first, then the dir removed',
      {
        mounts: [
          `${R}/sandboxes/x/shared/x/rootfs`,
          `${R}/sandboxes/x/shared/c1/rootfs/proc`,
          `${R}/sandboxes/x/shared/c1/rootfs`,
        ],
        sandboxDirs: ['x'],
      },
      live(),
      [
        { kind: 'unmount', target: `${R}/sandboxes/x/shared/c1/rootfs/proc`, sandboxId: 'x' },
        { kind: 'unmount', target: `${R}/sandboxes/x/shared/x/rootfs`, sandboxId: 'x' },
        { kind: 'unmount', target: `${R}/sandboxes/x/shared/c1/rootfs`, sandboxId: 'x' },
        { kind: 'removeTree', path: `${R}/sandboxes/x`, sandboxId: 'x' },
      ],
    ],
    [
      'mounts outside the run dir are never touched (containerd mounts under bundle roots)',
      {
        mounts: ['/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs', `${R}-other/sandboxes/y/z`],
      },
      live(),
      [],
    ],
    [
      'an orphaned VMM user (its comment names a gone sandbox) is removed; users of unknown origin are left alone',
      {
        users: [
          { name: 'corral-00002', uid: 1002, sandboxId: 'gone' },
          { name: 'corral-00003', uid: 1003, sandboxId: null },
        ],
      },
      live(),
      [{ kind: 'removeUser', user: 'corral-00002', uid: 1002, sandboxId: 'gone' }],
    ],
    [
      'order: VMs, then mounts, then dirs, then users',
      {
        users: [{ name: 'corral-00004', uid: 1004, sandboxId: 'o' }],
        sandboxDirs: ['o'],
        mounts: [`${R}/sandboxes/o/shared/o/rootfs`],
        vms: [{ sandboxId: 'o', pid: 12 }],
      },
      live('p'),
      [
        { kind: 'stopVm', sandboxId: 'o', pid: 12 },
        { kind: 'unmount', target: `${R}/sandboxes/o/shared/o/rootfs`, sandboxId: 'o' },
        { kind: 'removeTree', path: `${R}/sandboxes/o`, sandboxId: 'o' },
        { kind: 'removeUser', user: 'corral-00004', uid: 1004, sandboxId: 'o' },
      ],
    ],
  ])('%s', (_name, obs, liveSet, want) => {
    expect(decideReconcile({ ...none, ...obs }, liveSet, R)).toEqual(want);
  });
});

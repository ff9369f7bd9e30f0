/**
 * The VM pool's pure pieces and its bookkeeping, with a fake driver (no QEMU): the claim step's place in
 * a plan and its undo, class keys, what `scan` reports of pool VMs, and VmPool's claims (one VM to one
 * sandbox, also when claims race), misses, refills, restore after a worker restart and drain.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vmClassOf, withPoolClaim } from '../../src/agent/create-pool.ts';
import { poolCapacity } from '../../src/agent/pool-capacity.ts';
import type { BootArgs, BootSpec, ManagedVm, Step } from '../../src/domain/ops.ts';
import { classKey, isPoolId } from '../../src/domain/pool.ts';
import { compensationOf, compensationOfFailed } from '../../src/machines/compensation.ts';
import { VmPool, type PoolDriver } from '../../src/workers/hypervisor/pool.ts';
import { scannedAs } from '../../src/workers/hypervisor/pool-ops.ts';
import { waitFor } from '../helpers/wait.ts';

const boot: BootArgs = {
  sandboxId: 's1',
  vcpus: 1,
  memoryMiB: 512,
  kernel: '/g/vmlinux',
  initrd: '/g/initrd',
  kernelParams: '',
  machineType: 'microvm',
  accel: 'auto',
  sharedDir: '/run/corral/sandboxes/s1/shared',
  msize9p: 8192,
  runDir: '/run/corral/vm',
  bootTimeoutMs: 120_000,
};
const plan: Step[] = [
  { phase: 'mounting', kind: 'mkdir', args: { path: '/run/corral/sandboxes/s1', mode: 0o755 } },
  { phase: 'mounting', kind: 'bind', args: { source: '/b/rootfs', target: `${boot.sharedDir}/s1/rootfs` } },
  { phase: 'booting', kind: 'boot', args: boot },
];

describe('the claim step in a plan', () => {
  it('goes before the first bind when vm_cache_number > 0', () => {
    const steps = withPoolClaim(plan, 2);
    expect(steps.map((s) => s.kind)).toEqual(['mkdir', 'claimVm', 'bind', 'boot']);
    expect(steps[1]!.args).toEqual({ sandboxId: 's1', sharedDir: boot.sharedDir, vmClass: vmClassOf(boot), keep: 2 });
  });
  it('is left out without a cache size, and for a boot with a network or a VMM user', () => {
    expect(withPoolClaim(plan, 0)).toEqual(plan);
    const user: Step = { phase: 'preparingUser', kind: 'createUser', args: { sandboxId: 's1' } };
    expect(withPoolClaim([...plan.slice(0, 2), user, plan[2]!], 1).map((s) => s.kind)).not.toContain('claimVm');
    const net: Step = { phase: 'booting', kind: 'createNetns', args: { netns: '/run/netns/x' } };
    expect(withPoolClaim([...plan.slice(0, 2), net, plan[2]!], 1).map((s) => s.kind)).not.toContain('claimVm');
  });
  it('is undone by stopping the VM, unless it found none', () => {
    const claim = withPoolClaim(plan, 1)[1]!;
    expect(compensationOf(claim, { claimed: false })).toBeNull();
    expect(compensationOf(claim, { claimed: true, vmId: '_pool-a' })).toMatchObject({ kind: 'stopVm' });
    expect(compensationOfFailed(claim, { code: 'Timeout' })).toMatchObject({ kind: 'stopVm' });
    expect(compensationOfFailed(claim, { code: 'InvalidArgument' })).toBeNull();
  });
  it('class keys: equal for boots that differ only in sandbox, share and deadline', () => {
    const other = { ...boot, sandboxId: 's2', sharedDir: '/x', bootTimeoutMs: 1 };
    expect(classKey(vmClassOf(other))).toBe(classKey(vmClassOf(boot)));
    expect(classKey(vmClassOf({ ...boot, memoryMiB: 256 }))).not.toBe(classKey(vmClassOf(boot)));
  });
});

it('scan reports a claimed pool VM under its sandbox and an idle one not at all', () => {
  const managed = [{ sandboxId: 's1', pid: 10 } as ManagedVm, { sandboxId: '_pool-b', pid: 11 } as ManagedVm];
  const found = [
    { sandboxId: '_pool-a', pid: 10 },
    { sandboxId: '_pool-b', pid: 11 },
    { sandboxId: 'cold', pid: 12 },
  ];
  expect(scannedAs(found, managed)).toEqual([
    { sandboxId: 's1', pid: 10 },
    { sandboxId: 'cold', pid: 12 },
  ]);
});

/** A driver whose boots resolve when the test says so. */
class FakeDriver implements PoolDriver {
  vms = new Map<string, ManagedVm>();
  pending: { id: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  stopped: string[] = [];
  private pid = 100;
  boot(spec: BootSpec, signal: AbortSignal) {
    return new Promise<{ pid: number; accel: 'tcg'; bootMs: number }>((resolve, reject) => {
      const pid = this.pid++;
      const vm: ManagedVm = {
        sandboxId: spec.sandboxId,
        pid,
        accel: 'tcg',
        state: 'booting',
        startedAt: 0,
        processes: [],
      };
      this.vms.set(spec.sandboxId, vm);
      const fail = (e: Error) => {
        this.vms.delete(spec.sandboxId);
        reject(e);
      };
      signal.addEventListener('abort', () => fail(new Error('cancelled')), { once: true });
      this.pending.push({
        id: spec.sandboxId,
        resolve: () => {
          vm.state = 'running';
          resolve({ pid, accel: 'tcg', bootMs: 1 });
        },
        reject: fail,
      });
    });
  }
  async stop(id: string) {
    this.stopped.push(id);
    return { stopped: this.vms.delete(id) };
  }
  rekey(from: string, to: string) {
    const vm = this.vms.get(from)!;
    this.vms.delete(from);
    vm.sandboxId = to;
    this.vms.set(to, vm);
    return { pid: vm.pid };
  }
  list() {
    return [...this.vms.values()];
  }
  /** Finish the boot in flight (the pool boots one at a time). */
  async finishBoot() {
    const b = await waitFor(() => this.pending.shift(), { what: 'a pool boot in flight' });
    b!.resolve();
  }
}

describe('VmPool', () => {
  let run = '';
  let d: FakeDriver;
  let pool: VmPool;
  const records: [string, Record<string, unknown>][] = [];
  const req = (sid: string, keep = 1) => {
    mkdirSync(join(run, 'sandboxes', sid), { recursive: true });
    return {
      opId: sid,
      deadlineMs: 0,
      sandboxId: sid,
      sharedDir: `${run}/sandboxes/${sid}/shared`,
      vmClass: vmClassOf({ ...boot, runDir: `${run}/vm` }),
      keep,
    };
  };
  const idle = () => pool.view().vms.filter((v) => v.state === 'idle');
  beforeEach(() => {
    run = mkdtempSync('/tmp/corral-pool-unit-');
    d = new FakeDriver();
    records.length = 0;
    pool = new VmPool({
      driver: d,
      runDir: run,
      storePath: join(run, 'pool.json'),
      record: (id, r) => records.push([id, r]),
    });
  });
  afterEach(async () => {
    await pool.drain();
    rmSync(run, { recursive: true, force: true });
  });

  it('a miss learns the class and fills the pool; a claim takes the idle VM, renames its share, refills', async () => {
    expect(await pool.claim(req('a'))).toEqual({ claimed: false });
    await d.finishBoot();
    await waitFor(() => idle().length === 1, { what: 'an idle VM' });
    const vm = idle()[0]!;
    expect(isPoolId(vm.vmId)).toBe(true);
    expect(existsSync(join(run, 'pool', vm.vmId))).toBe(true);
    const r = await pool.claim(req('b'));
    expect(r).toMatchObject({ claimed: true, vmId: vm.vmId, pid: vm.pid });
    expect(existsSync(`${run}/sandboxes/b/shared`)).toBe(true); // the pool VM's served dir, renamed
    expect(existsSync(join(run, 'pool', vm.vmId))).toBe(false);
    expect(d.vms.get('b')?.pid).toBe(vm.pid);
    expect(records).toContainEqual(['b', expect.objectContaining({ event: 'claimed', vmId: vm.vmId })]);
    await d.finishBoot(); // the refill
    await waitFor(() => idle().length === 1, { what: 'the refill' });
    expect(pool.view().classes[0]).toMatchObject({ keep: 1, hits: 1, misses: 1, idle: 1 });
  });

  it('never hands one VM to two sandboxes, also when claims race', async () => {
    await pool.claim(req('a'));
    await d.finishBoot();
    await waitFor(() => idle().length === 1, { what: 'an idle VM' });
    const rs = await Promise.all(['b', 'c', 'e'].map((s) => pool.claim(req(s))));
    expect(rs.filter((r) => r.claimed)).toHaveLength(1);
    expect(new Set(d.list().map((v) => v.pid)).size).toBe(d.list().length);
  });

  it('a lost pool VM is forgotten and replaced', async () => {
    await pool.claim(req('a'));
    await d.finishBoot();
    await waitFor(() => idle().length === 1, { what: 'an idle VM' });
    const vm = idle()[0]!;
    d.vms.delete(vm.vmId);
    pool.lost(vm.vmId);
    expect(existsSync(join(run, 'pool', vm.vmId))).toBe(false);
    await d.finishBoot();
    await waitFor(() => idle().length === 1 && idle()[0]!.vmId !== vm.vmId, { what: 'a new idle VM' });
  });

  it('restore takes back the VMs its file lists and stops other pool VMs; drain leaves nothing', async () => {
    await pool.claim(req('a'));
    await d.finishBoot();
    await waitFor(() => idle().length === 1, { what: 'an idle VM' });
    const vm = idle()[0]!;
    // A new worker: the driver adopted the same VM plus a stray pool VM that no pool file lists.
    d.vms.set('_pool-stray', {
      sandboxId: '_pool-stray',
      pid: 999,
      accel: 'tcg',
      state: 'running',
      startedAt: 0,
      processes: [],
    });
    mkdirSync(join(run, 'pool', 'leftover'));
    const next = new VmPool({ driver: d, runDir: run, storePath: join(run, 'pool.json') });
    const r = await next.restore();
    expect(r).toEqual({ restored: [vm.vmId], stopped: ['_pool-stray'] });
    expect(next.view().vms).toMatchObject([{ vmId: vm.vmId, state: 'idle', adopted: true }]);
    expect(readdirSync(join(run, 'pool'))).toEqual([vm.vmId]);
    await next.drain();
    expect(d.list()).toEqual([]);
    expect(existsSync(join(run, 'pool'))).toBe(false);
  });
});

it('pool VMs are held as reservations of the agent; one that left the pool is released', async () => {
  const vmClass = vmClassOf(boot);
  const key = classKey(vmClass);
  let vms = [
    { vmId: '_pool-a', classKey: key, state: 'idle' as const, startedAt: 0 },
    { vmId: '_pool-b', classKey: key, state: 'booting' as const, startedAt: 0 },
  ];
  const classes = [{ classKey: key, vmClass, keep: 2, idle: 1, booting: 1, hits: 0, misses: 0 }];
  const held: Record<string, unknown> = {};
  const released: string[] = [];
  const workers = { read: async () => ({ classes, vms }) } as never;
  const registration = {
    hold: (id: string, r: unknown) => void (held[id] = r),
    release: async (r: { id: string }) => {
      released.push(r.id);
      return undefined;
    },
  };
  const pc = poolCapacity(workers, registration, 'n1');
  expect(await pc.sync()).toEqual(['_pool-a', '_pool-b']);
  expect(held['_pool-a']).toEqual({ vcpus: 1, memoryMiB: 512, ref: 'pool:n1' });
  vms = vms.slice(1); // _pool-a was claimed
  expect(await pc.sync()).toEqual(['_pool-b']);
  expect(released).toEqual(['_pool-a']);
});

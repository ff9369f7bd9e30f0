/**
 * The VM pool (docs/decisions/0016-vm-pool.md) with real QEMU guests: a runtime config with
 * `[factory] vm_cache_number = 1`. The first create finds no idle VM and boots cold; the pool fills;
 * the next create takes the pool VM (its VMM pid is the pool VM's) and its container's output comes back;
 * the pool refills; an idle pool VM and a claimed one survive a hypervisor worker SIGKILL (adopted, same
 * QEMU); shutdown leaves no pool QEMU, no pool directory, nothing of any sandbox.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import type { PoolOps } from '../../src/domain/pool.ts';
import { NodeRegistry } from '../../src/fleet/registry.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

type Pool = PoolOps['pool']['res'];
let n: TestNode;
let cfg = '';
const ids: string[] = [];
let stopped = false;

beforeAll(async () => {
  n = await testNode();
  cfg = join(n.configs, 'pooled.toml');
  writeFileSync(cfg, localRuntimeConfig(join(REPO, '.corral/guest')) + '\n[factory]\nvm_cache_number = 1\n');
});
afterAll(async () => {
  if (!stopped) await n?.removeTasks(ids);
  if (!stopped) await n?.cleanup();
});

const hv = <T>(op: string, timeoutMs = 5000) =>
  request<T>(n.nc, subjects.worker(n.node, 'hypervisor', op), {}, timeoutMs);
const pool = () => hv<Pool>('pool');
/** The pool once `until` holds (a worker restarting in between answers nothing: tried again). */
const poolWhen = (until: (p: Pool) => boolean, what: string, timeoutMs = 90_000) =>
  waitFor(pool, { until, timeoutMs, intervalMs: 200, ignoreErrors: true, what });
/** Waits until the pool has one idle VM other than `not`, and returns it. */
async function idleVm(not?: string) {
  const p = await poolWhen(
    (x) => x.vms.some((v) => v.state === 'idle' && v.vmId !== not),
    `an idle pool VM${not ? ` other than ${not}` : ''}`,
  );
  return p.vms.find((v) => v.state === 'idle' && v.vmId !== not)!;
}
const run = (id: string, args: string[]) => {
  ids.push(id);
  return n.cli(['run', '--id', id, '--bundle', n.bundle(id, { args }), '--config', cfg, '--rm']);
};
const poolQemus = () => processesMatching(`${n.dataDir}/run/pool/`);

describe('a VM pool with vm_cache_number = 1', () => {
  let first = '';
  it('a create with no idle VM boots cold, and the pool fills in the background', async () => {
    const r = await run('pcold', ['sh', '-c', 'echo cold-$((6*7))']);
    expect(r.stdout).toContain('cold-42');
    expect(r.code).toBe(0);
    const vm = await idleVm();
    first = vm.vmId;
    const cls = (await pool()).classes[0]!;
    expect(cls).toMatchObject({ keep: 1, misses: 1, hits: 0 });
    expect(cls.vmClass).toMatchObject({ vcpus: 1, memoryMiB: 512, machineType: 'microvm' });
  });

  it('a pooled create takes the idle VM and runs the container; its output comes back', async () => {
    const vm = await idleVm();
    const r = await run('pwarm', ['sh', '-c', 'echo warm-$((6*7)); ls /']);
    expect(r.stdout).toContain('warm-42');
    expect(r.code).toBe(0);
    expect((await pool()).classes[0]).toMatchObject({ hits: 1, misses: 1 });
    // The event log says where the sandbox's VM came from.
    const ev = await n.cli(['events', '--sandbox', 'pwarm', '--json']);
    const claimed = ev.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { kind: string; event?: string; vmId?: string; data?: Record<string, unknown> })
      .find((e) => e.kind === 'pool');
    expect(JSON.stringify(claimed)).toContain(vm.vmId);
    expect(JSON.stringify(claimed)).toContain('claimed');
    // Replay rebuilds it from the log, the claim among its effects.
    const rp = await n.cli(['replay', 'pwarm', '--json']);
    expect(rp.code).toBe(0);
    expect(rp.stdout).toContain('claimVm');
    expect(rp.stdout).toContain(vm.vmId);
  });

  it('the pool refills after a claim', async () => {
    const vm = await idleVm(first);
    expect(vm.vmId).not.toBe(first);
    expect((await pool()).vms.filter((v) => v.vmId === first)).toEqual([]); // handed out once, gone from the pool
    // The worker's journal has the pool's history too.
    const journal = readFileSync(join(n.dataDir, 'journal/hypervisor.jsonl'), 'utf8');
    expect(journal).toContain(`"pool:${vm.vmId}:booted:`);
    expect(journal).toContain('"pool:pwarm:claimed:');
    // `corral pool` shows it.
    const json = await n.cli(['pool', '--json']);
    expect(json.code).toBe(0);
    const listed = JSON.parse(json.stdout) as Pool & { node: string };
    expect(listed.node).toBe(n.node);
    expect(listed.vms.find((v) => v.vmId === vm.vmId)).toMatchObject({ state: 'idle', pid: vm.pid });
    expect(listed.classes[0]).toMatchObject({ keep: 1, hits: 1, misses: 1 });
    const human = await n.cli(['pool']);
    expect(human.stdout).toContain(`${vm.vmId}  idle  pid ${vm.pid}`);
    expect(human.stdout).toMatch(/class 1 vCPU 512 MiB microvm virtio-9p .*: keep 1, idle 1, booting 0/);
    expect((await n.cli(['pool', '--help'])).stdout).toContain('Usage: corral pool [--json]');
    // The pool VM counts against the node's capacity in the fleet registry; the claimed one no longer does.
    const registry = await NodeRegistry.open(n.nc);
    const entry = await waitFor(async () => (await registry.get(n.node))?.entry, {
      until: (e) => !!e?.reservations[vm.vmId] && !e.reservations[first],
      timeoutMs: 15_000,
      intervalMs: 200,
      what: `a reservation of pool VM ${vm.vmId} in the registry, none of ${first}`,
    });
    expect(entry!.reservations[vm.vmId]).toMatchObject({ vcpus: 1, memoryMiB: 512, ref: `pool:${n.node}` });
  });

  it('one idle VM and two creates at once: one takes it, the other boots cold; both run', async () => {
    const vm = await idleVm();
    const two = ['prace1', 'prace2'];
    ids.push(...two);
    const pids = await Promise.all(
      two.map(async (id) => {
        const bundle = n.bundle(id, { args: ['true'] });
        return (await n.call<{ pid: number }>('create', { id, bundle, options: { configPath: cfg } })).pid;
      }),
    );
    expect(pids.filter((p) => p === vm.pid)).toHaveLength(1);
    expect(new Set(pids).size).toBe(2);
    for (const id of two) {
      await n.call('start', { id });
      expect((await n.call<{ exitStatus: number }>('wait', { id })).exitStatus).toBe(0);
      await n.call('delete', { id });
    }
  });

  it('an idle and a claimed pool VM survive a hypervisor worker SIGKILL (adopted, same QEMU)', async () => {
    const vm = await idleVm();
    ids.push('pheld');
    const { pid } = await n.call<{ pid: number }>('create', {
      id: 'pheld',
      bundle: n.bundle('pheld', { args: ['sh', '-c', 'echo held-ok'] }),
      options: { configPath: cfg },
    });
    expect(pid).toBe(vm.pid); // the sandbox's VMM is the pool VM's QEMU
    const idle = await idleVm(vm.vmId);

    const { pid: worker } = await hv<{ pid: number }>('__ping');
    process.kill(worker, 'SIGKILL');
    await waitFor(() => hv<{ pid: number }>('__ping', 500).catch(() => undefined), {
      until: (b) => b !== undefined && b.pid !== worker,
      timeoutMs: 30_000,
      what: 'the agent to restart the hypervisor worker',
    });
    const after = await poolWhen(
      (p) => p.vms.some((v) => v.vmId === idle.vmId && v.adopted === true),
      `pool VM ${idle.vmId} adopted by the new worker`,
      60_000,
    );
    expect(after.vms.find((v) => v.vmId === idle.vmId)?.pid).toBe(idle.pid);
    expect(processesMatching(`-name corral-${idle.vmId} `)).toEqual([idle.pid]);

    // The claimed VM is still the sandbox's: it starts, and its process runs in the pool VM.
    await n.call('start', { id: 'pheld' });
    const w = await n.call<{ exitStatus: number }>('wait', { id: 'pheld' });
    expect(w.exitStatus).toBe(0);
    await n.call('delete', { id: 'pheld' });

    // The adopted idle VM is handed out like any other.
    const r = await run('padopt', ['sh', '-c', 'echo adopted-ok']);
    expect(r.stdout).toContain('adopted-ok');
    expect(r.code).toBe(0);
    expect(processesMatching(`-name corral-${idle.vmId} `)).toEqual([]); // deleted with its sandbox
  });

  it('an idle pool VM survives an agent SIGKILL (the same QEMU, handed out after)', async () => {
    const vm = await idleVm();
    await n.restartAgent(); // SIGKILL, then a new agent (and workers) that recovers and reconciles
    const p = await poolWhen(
      (x) => x.vms.some((v) => v.vmId === vm.vmId && v.state === 'idle'),
      `pool VM ${vm.vmId} idle after the agent restart`,
      60_000,
    );
    expect(p.vms.find((v) => v.vmId === vm.vmId)?.pid).toBe(vm.pid);
    expect(processesMatching(`-name corral-${vm.vmId} `)).toEqual([vm.pid]);
    ids.push('pagent');
    const { pid } = await n.call<{ pid: number }>('create', {
      id: 'pagent',
      bundle: n.bundle('pagent', { args: ['true'] }),
      options: { configPath: cfg },
    });
    expect(pid).toBe(vm.pid);
    await n.call('start', { id: 'pagent' });
    expect((await n.call<{ exitStatus: number }>('wait', { id: 'pagent' })).exitStatus).toBe(0);
    await n.call('delete', { id: 'pagent' });
  });

  it('virtio-fs: a class of its own; the pooled create runs in the VM whose virtiofsd serves the share', async () => {
    const fsCfg = join(n.configs, 'pooled-fs.toml');
    writeFileSync(fsCfg, readFileSync(cfg, 'utf8').replace('shared_fs = "virtio-9p"', 'shared_fs = "virtio-fs"'));
    const go = (id: string) => {
      ids.push(id);
      return n.cli([
        'run',
        '--id',
        id,
        '--bundle',
        n.bundle(id, { args: ['cat', '/etc/passwd'] }),
        '--config',
        fsCfg,
        '--rm',
      ]);
    };
    expect((await go('pfs-cold')).stdout).toContain('root:x:0:0');
    const p = await poolWhen(
      (x) => x.classes.length === 2 && x.vms.filter((v) => v.state === 'idle').length === 2,
      'an idle VM of each class',
    );
    const fsClass = p.classes.find((c) => c.vmClass.virtioFs)!;
    const r = await go('pfs-warm');
    expect(r.stdout).toContain('root:x:0:0');
    expect(r.code).toBe(0);
    expect((await pool()).classes.find((c) => c.classKey === fsClass.classKey)).toMatchObject({ hits: 1, misses: 1 });
  });

  it("a node's default config with a pool: VMs kept from agent start; a create with no config takes one", async () => {
    const primed = join(n.configs, 'primed.toml');
    writeFileSync(primed, readFileSync(cfg, 'utf8').replace('default_memory = 512', 'default_memory = 256'));
    await n.restartAgent({ CORRAL_CONF_FILE: primed });
    const small = (p: Pool) => p.classes.find((c) => c.vmClass.memoryMiB === 256);
    const p = await poolWhen(
      (x) => x.vms.some((v) => v.state === 'idle' && v.classKey === small(x)?.classKey),
      'an idle VM of the default config class (256 MiB), before any create asked for it',
    );
    expect(small(p)).toMatchObject({ keep: 1, hits: 0, misses: 0 });
    ids.push('pdefault');
    const r = await n.cli([
      'run',
      '--id',
      'pdefault',
      '--bundle',
      n.bundle('pdefault', { args: ['echo', 'primed'] }),
      '--rm',
    ]);
    expect(r.stdout).toContain('primed');
    expect(r.code).toBe(0);
    expect(small(await pool())).toMatchObject({ hits: 1, misses: 0 });
  });

  it('shutdown drains the pool: no pool QEMU, no pool directory, nothing of any sandbox', async () => {
    await idleVm();
    expect(poolQemus().length).toBeGreaterThan(0);
    await n.stop(); // the agent's SIGTERM: teardown, then the workers stop (the pool drains)
    stopped = true;
    expect(poolQemus()).toEqual([]);
    await n.expectNothingLeft(ids); // the pool's virtiofsd too: its share is under the node's data dir
    expect(existsSync(join(n.dataDir, 'run/pool')) ? readdirSync(join(n.dataDir, 'run/pool')) : []).toEqual([]);
    await n.cleanup();
  });
});

/**
 * The VM pool (domain/pool.ts; Kata's VMCache): booted, idle guests per VM class, each with its own empty
 * share directory `<runDir>/pool/<vmId>` that its QEMU (9p) or virtiofsd already serves. A claim renames
 * that directory onto the sandbox's share path (the server keeps the directory, not its name, so what is
 * put there afterwards is what the guest sees) and hands the VM to the sandbox (`rekey`).
 *
 * - One VM goes to one sandbox: a VM leaves the idle list in the same synchronous step that picks it.
 * - The pool refills in the background, one boot at a time (boots are CPU-bound), after every claim and
 *   every loss; a class whose boot failed waits before it tries again.
 * - Pool VMs are the driver's VMs under their pool id: listed in its registry and adopted after a worker
 *   restart like any VM. `restore` then takes back those its file lists and stops any other `_pool-` VM.
 * - `drain` (worker shutdown) stops them all and removes their directories.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { ensureError, err } from '../../errors.ts';
import type { BootSpec, ManagedVm } from '../../domain/ops.ts';
import {
  classKey,
  isPoolId,
  POOL_ID_PREFIX,
  type PoolClassView,
  type PoolOps,
  type PoolVmView,
  type VmClass,
} from '../../domain/pool.ts';
import type { BootResult } from './hypervisor.ts';
import { PoolStore } from './pool-store.ts';

/** What the pool needs of its driver (QemuDriver). */
export interface PoolDriver {
  boot(spec: BootSpec, signal: AbortSignal): Promise<BootResult>;
  stop(id: string, deadlineMs?: number): Promise<{ stopped: boolean }>;
  rekey(from: string, to: string): { pid: number };
  list(): ManagedVm[];
}

export interface PoolOptions {
  driver: PoolDriver;
  /** The worker's run dir: pool shares live in `<runDir>/pool/`, sandbox shares in `<runDir>/sandboxes/`. */
  runDir: string;
  storePath?: string;
  /** Append a record to the event log (`pool` records, under the VM's or the claiming sandbox's id). */
  record?(id: string, data: Record<string, unknown>): void;
  warn?(msg: string, e?: unknown): void;
  /** How long a class waits after a failed boot. @default 10_000 */
  retryMs?: number;
}

/** No class keeps more than this many idle VMs, whatever `vm_cache_number` says (a node has 2 cores here). */
export const MAX_KEEP = 4;
type Cls = { vmClass: VmClass; keep: number; hits: number; misses: number; failedAt?: number };
type Req = PoolOps['claim']['req'];
type Res = PoolOps['claim']['res'];

export class VmPool {
  private classes = new Map<string, Cls>();
  private vms = new Map<string, PoolVmView>();
  private store: PoolStore;
  private abort = new AbortController();
  private filling: Promise<void> | null = null;
  private timer?: NodeJS.Timeout;

  constructor(private o: PoolOptions) {
    this.store = new PoolStore(o.storePath);
  }

  private dirOf = (vmId: string) => `${this.o.runDir}/pool/${vmId}`;

  /** See PoolOps.claim. */
  async claim(r: Req): Promise<Res> {
    const sandboxes = `${this.o.runDir}/sandboxes/`;
    if (!r.sharedDir.startsWith(sandboxes) || r.sharedDir.includes('/../'))
      throw err.invalid(`sharedDir ${r.sharedDir} is not under ${sandboxes}`);
    const mine = this.o.driver.list().find((v) => v.sandboxId === r.sandboxId);
    if (mine) {
      // A claim re-issued after a worker restart that had done it: the same answer.
      if (existsSync(r.sharedDir)) return { claimed: true, pid: mine.pid };
      throw err.exists(`sandbox ${r.sandboxId} has a VM already`);
    }
    if (existsSync(r.sharedDir)) throw err.precondition(`sharedDir ${r.sharedDir} exists already`);
    if (!existsSync(dirname(r.sharedDir))) throw err.notFound(`${dirname(r.sharedDir)} does not exist`);
    if (this.abort.signal.aborted) return { claimed: false }; // draining: the create boots cold
    const [key, cls] = this.classOf(r.vmClass, r.keep);
    const vm = [...this.vms.values()].find((v) => v.classKey === key && v.state === 'idle');
    if (!vm) {
      cls.misses++;
      this.save();
      this.refill();
      return { claimed: false };
    }
    this.vms.delete(vm.vmId); // before any await: nobody else can pick it
    cls.hits++;
    this.save();
    try {
      const { pid } = this.o.driver.rekey(vm.vmId, r.sandboxId);
      renameSync(this.dirOf(vm.vmId), r.sharedDir);
      this.o.record?.(r.sandboxId, { event: 'claimed', vmId: vm.vmId, pid, classKey: key, bootedAt: vm.startedAt });
      return { claimed: true, vmId: vm.vmId, pid, bootedAt: vm.startedAt };
    } catch (e) {
      for (const id of [r.sandboxId, vm.vmId]) await this.o.driver.stop(id).catch(() => ({ stopped: false }));
      rmSync(this.dirOf(vm.vmId), { recursive: true, force: true });
      throw err.internal(`pool VM ${vm.vmId} could not be handed to ${r.sandboxId}: ${ensureError(e).message}`, e);
    } finally {
      this.refill();
    }
  }

  /** See PoolOps.keep. */
  keep(vmClass: VmClass, keep: number): { keep: number } {
    const [, cls] = this.classOf(vmClass, keep);
    this.save();
    this.refill();
    return { keep: cls.keep };
  }

  /** The class (made if new), keeping at least `keep` (at most MAX_KEEP). */
  private classOf(vmClass: VmClass, keep: number): [string, Cls] {
    const key = classKey(vmClass);
    const cls = this.classes.get(key) ?? { vmClass, keep: 0, hits: 0, misses: 0 };
    cls.keep = Math.max(cls.keep, Math.min(MAX_KEEP, Math.floor(keep)));
    this.classes.set(key, cls);
    return [key, cls];
  }

  /** See PoolOps.pool. */
  view(): PoolOps['pool']['res'] {
    const vms = [...this.vms.values()];
    const classes: PoolClassView[] = [...this.classes].map(([k, c]) => ({
      classKey: k,
      vmClass: c.vmClass,
      keep: c.keep,
      idle: vms.filter((v) => v.classKey === k && v.state === 'idle').length,
      booting: vms.filter((v) => v.classKey === k && v.state === 'booting').length,
      hits: c.hits,
      misses: c.misses,
    }));
    return { classes, vms: vms.map((v) => ({ ...v })) };
  }

  /** A pool VM's QEMU ended (its `vmExit`): forget it and boot another. */
  lost(vmId: string): void {
    if (!this.vms.delete(vmId)) return;
    rmSync(this.dirOf(vmId), { recursive: true, force: true });
    this.o.record?.(vmId, { event: 'lost' });
    this.save();
    this.refill();
  }

  /**
   * After the driver's adoption: the VMs the pool file lists that were adopted and whose share is there
   * are idle pool VMs again; any other `_pool-` VM and directory is stopped and removed.
   */
  async restore(): Promise<{ restored: string[]; stopped: string[] }> {
    const f = this.store.load();
    for (const c of f.classes)
      this.classes.set(classKey(c.vmClass), {
        vmClass: c.vmClass,
        keep: Math.min(MAX_KEEP, c.keep),
        hits: 0,
        misses: 0,
      });
    const listed = new Map(f.vms.map((v) => [v.vmId, v]));
    const restored: string[] = [];
    const stopped: string[] = [];
    for (const m of this.o.driver.list().filter((v) => isPoolId(v.sandboxId))) {
      const v = listed.get(m.sandboxId);
      if (v && m.state === 'running' && m.processes.length === 0 && existsSync(this.dirOf(v.vmId))) {
        this.vms.set(v.vmId, { ...v, state: 'idle', pid: m.pid, readyAt: v.readyAt ?? Date.now(), adopted: true });
        restored.push(v.vmId);
      } else {
        await this.o.driver.stop(m.sandboxId).catch((e: unknown) => this.o.warn?.(`pool VM ${m.sandboxId}`, e));
        stopped.push(m.sandboxId);
      }
    }
    this.removeStrayDirs();
    for (const id of restored) this.o.record?.(id, { event: 'adopted' });
    this.save();
    this.refill();
    return { restored, stopped };
  }

  /** Stop refilling, stop every pool VM (booting ones are cancelled), remove their directories. */
  async drain(deadlineMs = Date.now() + 10_000): Promise<void> {
    this.abort.abort(err.cancelled('the pool is draining'));
    clearTimeout(this.timer);
    await this.filling; // bootOne never rejects
    const ids = [...this.vms.keys()];
    await Promise.all(ids.map((id) => this.o.driver.stop(id, deadlineMs).catch((e: unknown) => this.o.warn?.(id, e))));
    for (const id of ids) this.o.record?.(id, { event: 'drained' });
    this.vms.clear();
    this.removeStrayDirs();
    rmSync(`${this.o.runDir}/pool`, { recursive: true, force: true });
    this.save();
  }

  /** Boot what the classes lack, one VM at a time, until each has `keep` (or the pool drains). */
  private refill(): void {
    if (this.filling || this.abort.signal.aborted) return;
    const next = this.nextClass();
    if (!next) return;
    this.filling = this.bootOne(next).finally(() => {
      this.filling = null;
      this.refill();
    });
  }

  private nextClass(): string | undefined {
    const retryMs = this.o.retryMs ?? 10_000;
    const vms = [...this.vms.values()];
    for (const [k, c] of this.classes) {
      if (c.failedAt !== undefined && Date.now() - c.failedAt < retryMs) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.refill(), retryMs);
        this.timer.unref();
        continue;
      }
      if (vms.filter((v) => v.classKey === k).length < c.keep) return k;
    }
    return undefined;
  }

  private async bootOne(key: string): Promise<void> {
    const cls = this.classes.get(key)!;
    const vmId = `${POOL_ID_PREFIX}${randomBytes(6).toString('hex')}`;
    const dir = this.dirOf(vmId);
    const v: PoolVmView = { vmId, classKey: key, state: 'booting', startedAt: Date.now() };
    this.vms.set(vmId, v);
    this.save(); // before QEMU runs: a worker killed during the boot finds it in the file
    try {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      const { virtioFs, ...c } = cls.vmClass;
      const spec: BootSpec = { ...c, ...(virtioFs ? { virtioFs } : {}), sandboxId: vmId, sharedDir: dir };
      const r = await this.o.driver.boot(spec, this.abort.signal);
      Object.assign(v, { state: 'idle', pid: r.pid, readyAt: Date.now() });
      cls.failedAt = undefined;
      this.o.record?.(vmId, { event: 'booted', pid: r.pid, classKey: key, bootMs: r.bootMs });
    } catch (e) {
      this.vms.delete(vmId);
      rmSync(dir, { recursive: true, force: true });
      if (!this.abort.signal.aborted) {
        cls.failedAt = Date.now();
        this.o.warn?.(`pool boot of ${vmId} failed`, e);
      }
    }
    this.save();
  }

  /** Directories in `<runDir>/pool/` of no pool VM (a worker killed between mkdir and boot). */
  private removeStrayDirs(): void {
    let names: string[];
    try {
      names = readdirSync(`${this.o.runDir}/pool`);
    } catch {
      return; // no pool dir: nothing stray
    }
    for (const n of names) if (!this.vms.has(n)) rmSync(this.dirOf(n), { recursive: true, force: true });
  }

  private save(): void {
    this.store.save({
      classes: [...this.classes.values()].map((c) => ({ vmClass: c.vmClass, keep: c.keep })),
      vms: [...this.vms.values()],
    });
  }
}

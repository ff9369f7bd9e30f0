/**
 * `shared_fs = "virtio-fs"` on a real node (real virtiofsd, real QEMU guests): a container's rootfs and a
 * bind mount are served by the sandbox's virtiofsd (the guest's /proc/mounts says virtiofs, a write reaches
 * the host), and so is a pod container's rootfs bound into the share after the boot; a rootless sandbox's
 * VM and virtiofsd are adopted by the hypervisor worker restarted after a SIGKILL; creates that fail after
 * virtiofsd started roll back. After each, no virtiofsd (nor anything else) is left.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import type { Adoption } from '../../src/workers/hypervisor/hypervisor.ts';
import { findVirtiofsd } from '../../src/workers/hypervisor/virtiofsd-args.ts';
import { virtiofsdUnder } from '../helpers/leaks.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
const ids: string[] = [];
const cfg: Record<'plain' | 'rootless' | 'badGuest', string> = { plain: '', rootless: '', badGuest: '' };
beforeAll(async () => {
  expect(findVirtiofsd(), 'a virtiofsd (Debian 12: qemu-system-common; 13: virtiofsd)').toBeDefined();
  n = await testNode({ faults: true });
  const vfs = localRuntimeConfig(join(REPO, '.corral/guest')).replace(
    'shared_fs = "virtio-9p"',
    'shared_fs = "virtio-fs"',
  );
  const variants = {
    plain: vfs,
    rootless: vfs.replace('[hypervisor.qemu]', '[hypervisor.qemu]\nrootless = true'),
    // The guest's /init fails (no such module) and powers off: after virtiofsd started, before READY.
    badGuest: vfs.replace('[hypervisor.qemu]', '[hypervisor.qemu]\nkernel_params = "corral.modules=nope"'),
  };
  for (const [k, toml] of Object.entries(variants)) {
    cfg[k as keyof typeof cfg] = join(n.configs, `vfs-${k}.toml`);
    writeFileSync(cfg[k as keyof typeof cfg], toml);
  }
});
afterAll(async () => {
  await n?.cleanup();
});
afterEach(async () => {
  await n.expectNothingLeft(ids);
});

const hv = <T>(op: string, timeoutMs = 2000) =>
  request<T>(n.nc, subjects.worker(n.node, 'hypervisor', op), {}, timeoutMs);

describe('virtio-fs share', () => {
  it("serves the rootfs and a bind mount: reads, a write reaches the host, the guest's mount is virtiofs", async () => {
    const vol = join(n.bundles, 'vfs-vol');
    mkdirSync(vol, { recursive: true });
    writeFileSync(join(vol, 'in.txt'), 'from the host\n');
    const b = n.bundle('vfs-read', {
      args: [
        'sh',
        '-c',
        'cat /greeting.txt /data/in.txt; echo from-guest > /data/out.txt; grep " /data " /proc/mounts',
      ],
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/data', type: 'bind', source: vol, options: ['rbind', 'rw'] },
      ],
    });
    writeFileSync(join(b, 'rootfs/greeting.txt'), 'hello from the rootfs\n');
    ids.push('vfs-read');
    const r = await n.cli(['run', '--id', 'vfs-read', '--bundle', b, '--config', cfg.plain, '--rm']);
    expect(r.stderr).not.toMatch(/can't|No such file/);
    expect(r.stdout).toContain('hello from the rootfs\nfrom the host\n');
    expect(r.stdout).toMatch(/^corral \/data virtiofs /m);
    expect(r.code).toBe(0);
    expect(readFileSync(join(vol, 'out.txt'), 'utf8')).toBe('from-guest\n');
  });

  it('a pod container joining the running guest: its rootfs, bound into the share after boot, is served', async () => {
    const pod = { 'io.kubernetes.cri.container-type': 'sandbox' };
    ids.push('vfs-pod');
    const sb = n.bundle('vfs-pod', { args: ['sleep', '600'], annotations: pod });
    await n.call('create', { id: 'vfs-pod', bundle: sb, options: { configPath: cfg.plain } });
    await n.call('start', { id: 'vfs-pod' });
    const c = n.bundle('vfs-pod-c', {
      args: ['cat', '/greeting.txt'],
      annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'vfs-pod' },
    });
    writeFileSync(join(c, 'rootfs/greeting.txt'), 'joined later\n');
    const t0 = performance.now();
    expect(await n.cli(['run', '--id', 'vfs-pod-c', '--bundle', c, '--rm'])).toMatchObject({
      code: 0,
      stdout: 'joined later\n',
    });
    // Its rootfs is unmounted from the share at once: the guest let go of its files (no EBUSY until the
    // unmount's deadline, about 60 s, then a lazy unmount).
    expect(performance.now() - t0).toBeLessThan(25_000);
    await n.call('kill', { id: 'vfs-pod', signal: 'SIGKILL' });
    await n.call('wait', { id: 'vfs-pod' });
    await n.call('delete', { id: 'vfs-pod' });
  });

  it('the hypervisor worker SIGKILLed: the restarted one adopts the rootless VM with its virtiofsd', async () => {
    const id = 'vfs-adopt';
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'] });
    writeFileSync(join(b, 'rootfs/greeting.txt'), 'still served\n');
    await n.call('create', { id, bundle: b, options: { configPath: cfg.rootless } });
    await n.call('start', { id });
    const [daemon] = virtiofsdUnder(n.dataDir);
    expect(daemon).toBeGreaterThan(0);

    const { pid } = await hv<{ pid: number }>('__ping');
    process.kill(pid, 'SIGKILL');
    const scan = await waitFor(() => hv<{ adoption: Adoption | null }>('scan', 5000).catch(() => undefined), {
      until: (s) => s?.adoption !== null && s?.adoption !== undefined,
      timeoutMs: 60_000,
      intervalMs: 100,
      what: 'the restarted hypervisor worker to settle its adoption',
    });
    expect(scan?.adoption?.adopted.map((a) => a.sandboxId)).toEqual([id]);
    expect(virtiofsdUnder(n.dataDir)).toEqual([daemon]); // the same daemon, not a new one

    const e = await n.cli(['exec', id, '--', 'sh', '-c', 'cat /greeting.txt; echo adopted > /written.txt']);
    expect(e).toMatchObject({ code: 0, stdout: 'still served\n' });
    expect(readFileSync(join(b, 'rootfs/written.txt'), 'utf8')).toBe('adopted\n');
    await n.call('kill', { id, signal: 'SIGKILL' });
    expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 137 });
    await n.call('delete', { id });
  });

  it('a guest that fails after virtiofsd started: the create fails with its reason and rolls back', async () => {
    const id = 'vfs-badguest';
    ids.push(id);
    const b = n.bundle(id, { args: ['true'] });
    await expect(n.call('create', { id, bundle: b, options: { configPath: cfg.badGuest } })).rejects.toMatchObject({
      code: 'Internal',
      message: expect.stringContaining('no module nope'),
    });
  });

  it('the hypervisor worker killed once the VM and virtiofsd run, before it answers boot: rolled back', async () => {
    const id = 'vfs-crashafter';
    ids.push(id);
    await n.fault('hypervisor', 'boot', 'crashAfter');
    const b = n.bundle(id, { args: ['true'] });
    await expect(n.call('create', { id, bundle: b, options: { configPath: cfg.plain } }, 60_000)).rejects.toMatchObject(
      {
        code: 'Unavailable',
      },
    );
  });
});

/**
 * Kata's rules put together for one request (src/agent/create-rules.ts), on real files: config
 * precedence, static sandbox sizing into the boot step, rootfs decisions into mount steps, the
 * rootless step, and a pod container reusing its sandbox's config.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createRules } from '../../src/agent/create-rules.ts';
import { loadSettings } from '../../src/agent/settings.ts';
import type { CreateTaskRequest } from '../../src/domain/task.ts';
import { request } from '../helpers/fake-effects.ts';

const dir = mkdtempSync('/tmp/corral-rules-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
for (const f of ['vmlinux', 'initrd']) writeFileSync(join(dir, f), 'x'.repeat(4096));
const toml = (extra = '', runtime = '') =>
  `[hypervisor.qemu]\npath = "/bin/true"\nkernel = "${dir}/vmlinux"\ninitrd = "${dir}/initrd"\n` +
  `machine_type = "microvm"\nshared_fs = "virtio-9p"\n${extra}\n[runtime]\n${runtime}\n`;
writeFileSync(
  join(dir, 'static.toml'),
  toml('default_vcpus = 1\ndefault_memory = 2048', 'static_sandbox_resource_mgmt = true'),
);
writeFileSync(join(dir, 'dynamic.toml'), toml('default_vcpus = 1\ndefault_memory = 2048\nrootless = true'));
writeFileSync(join(dir, 'env.toml'), toml('default_memory = 300'));

function bundle(name: string, annotations: Record<string, string> = {}, more: Record<string, unknown> = {}): string {
  const b = join(dir, 'bundles', name);
  mkdirSync(join(b, 'rootfs'), { recursive: true });
  writeFileSync(
    join(b, 'config.json'),
    JSON.stringify({
      process: { args: ['sh'], env: ['A=b=c', 'NOEQ'], cwd: '/' },
      root: { path: 'rootfs' },
      annotations,
      linux: { resources: { memory: { limit: 1 << 30 } } },
      ...more,
    }),
  );
  return b;
}
const req = (id: string, b: string, over: Partial<CreateTaskRequest> = {}) => request(id, { bundle: b, ...over });
const rules = (env: NodeJS.ProcessEnv = {}) =>
  createRules(loadSettings({ runDir: join(dir, 'run'), bundleRoot: join(dir, 'bundles'), configRoot: dir }, env));
const POD = {
  'io.kubernetes.cri.container-type': 'sandbox',
  'io.kubernetes.cri.sandbox-memory': '536870912',
  'io.kubernetes.cri.sandbox-cpu-quota': '150000',
  'io.kubernetes.cri.sandbox-cpu-period': '100000',
};

describe('create rules', () => {
  it('static sizing adds the pod annotations to the defaults (Kata [C] example: 3 vCPU / 2560 MiB)', async () => {
    const r = rules();
    const rq = req('pod.sb-1', bundle('pod', POD), { options: { configPath: join(dir, 'static.toml') } });
    const plan = await r.configure(rq, await r.validate(rq));
    const boot = plan.steps.find((s) => s.kind === 'boot')!;
    expect(boot.args).toMatchObject({ vcpus: 3, memoryMiB: 2560, machineType: 'microvm', sandboxId: 'pod.sb-1' });
    expect(plan.type).toBe('pod_sandbox');
    expect(plan.process.env).toEqual(['A=b=c']); // split on the first '=' (Kata truncated to A=b); no '=' dropped
    // No network keys: Kata's defaults (tcfilter, a namespace made for the sandbox), as config.json names none.
    expect(plan.steps.map((s) => s.kind)).toEqual(['mkdir', 'bind', 'createNetns', 'setupNetwork', 'boot']);
  });

  it('without static management the VM boots at the defaults; rootless adds the user step', async () => {
    const r = rules();
    const rq = req('dyn', bundle('dyn', POD), { options: { configPath: join(dir, 'dynamic.toml') } });
    const plan = await r.configure(rq, await r.validate(rq));
    expect(plan.steps.find((s) => s.kind === 'boot')!.args).toMatchObject({ vcpus: 1, memoryMiB: 2048 });
    expect(plan.steps.map((s) => s.phase)).toEqual([
      'mounting',
      'mounting',
      'preparingUser',
      'booting', // createNetns, setupNetwork (Kata's default network), then boot
      'booting',
      'booting',
    ]);
  });

  it('precedence: create option over CORRAL_CONF_FILE; then CORRAL_CONF_FILE over the defaults', async () => {
    const r = rules({ CORRAL_CONF_FILE: join(dir, 'env.toml') });
    const b = bundle('prec');
    const viaEnv = await r.configure(req('prec', b), await r.validate(req('prec', b)));
    expect(viaEnv.config).toMatchObject({ path: join(dir, 'env.toml'), source: 'CORRAL_CONF_FILE' });
    expect(viaEnv.memoryMiB).toBe(300);
    const rq = req('prec', b, { options: { configPath: join(dir, 'static.toml') } });
    expect((await r.configure(rq, await r.validate(rq))).config).toMatchObject({ source: 'option' });
  });

  it('rootfs entries become one mount step onto <bundle>/rootfs, in order', async () => {
    const r = rules({ CORRAL_CONF_FILE: join(dir, 'env.toml') });
    const b = bundle('mnt');
    const rq = req('mnt', b, {
      rootfs: [
        { type: 'tmpfs', source: 'a', options: [] },
        { type: 'tmpfs', source: 'b', options: ['ro'] },
      ],
    });
    const plan = await r.configure(rq, await r.validate(rq));
    expect(plan.steps[0]).toEqual({
      phase: 'mounting',
      kind: 'mountRootfs',
      args: { target: join(b, 'rootfs'), mounts: rq.rootfs },
    });
  });

  it('a pod container reuses its sandbox config, bind-mounts into the sandbox share, reports the VMM pid', async () => {
    const r = rules({ CORRAL_CONF_FILE: join(dir, 'env.toml') });
    const sb = req('sb2', bundle('sb2', { 'io.kubernetes.cri.container-type': 'sandbox' }));
    const sbPlan = await r.configure(sb, await r.validate(sb));
    const c = req(
      'c1',
      bundle('c1', {
        'io.kubernetes.cri.container-type': 'container',
        'io.kubernetes.cri.sandbox-id': 'sb2',
        'io.katacontainers.config_path': '/nope',
      }),
    );
    expect(await r.classify(c)).toEqual({ type: 'pod_container', sandboxId: 'sb2' });
    const plan = await r.configure(c, await r.validate(c), { pid: 4321, plan: sbPlan });
    expect(plan).toMatchObject({ type: 'pod_container', sandboxId: 'sb2', hostPid: 4321, config: sbPlan.config });
    expect(plan.steps).toEqual([
      {
        phase: 'mounting',
        kind: 'bind',
        args: {
          source: join(dir, 'bundles/c1/rootfs'),
          target: join(dir, 'run/sandboxes/sb2/shared/c1/rootfs'),
          readonly: false,
        },
      },
    ]);
  });

  it("a create's validate takes its classification's reading once; any other reads the bundle again", async () => {
    const r = rules();
    const args = async (q: CreateTaskRequest) => (await r.validate(q)).spec.process.args;
    const b = bundle('once');
    const rq = req('once', b);
    await r.classify(rq);
    bundle('once', {}, { process: { args: ['true'], env: [], cwd: '/' } }); // changed after the classification
    expect(await args(rq)).toEqual(['sh']);
    expect(await args(rq)).toEqual(['true']);
    const copy = { ...rq }; // a request from the log is another object: read afresh
    await r.classify(rq);
    expect(await args(copy)).toEqual(['true']);
  });

  it('shared_fs = "virtio-fs" boots with the virtiofsd, cache, extra args and queue size of the config', async () => {
    const vfs = 'shared_fs = "virtio-fs"\nvirtio_fs_daemon = "/bin/true"\nvirtio_fs_cache = "auto"';
    writeFileSync(
      join(dir, 'vfs.toml'),
      toml().replace(
        'shared_fs = "virtio-9p"',
        `${vfs}\nvirtio_fs_extra_args = ["-o", "xattr"]\nvirtio_fs_queue_size = 512`,
      ),
    );
    const r = rules();
    const rq = req('vfs', bundle('vfs'), { options: { configPath: join(dir, 'vfs.toml') } });
    const boot = (await r.configure(rq, await r.validate(rq))).steps.find((s) => s.kind === 'boot')!;
    expect(boot.args).toMatchObject({
      virtioFs: { daemon: '/bin/true', cache: 'auto', extraArgs: ['-o', 'xattr'], queueSize: 512 },
    });
    const nine = req('nine', bundle('nine'), { options: { configPath: join(dir, 'static.toml') } });
    expect(
      (await r.configure(nine, await r.validate(nine))).steps.find((s) => s.kind === 'boot')!.args,
    ).not.toHaveProperty('virtioFs');
  });

  it.each([
    ['shared_fs = "virtio-fs-nydus"\nvirtio_fs_daemon = "/bin/true"', 'virtio-9p or virtio-fs'],
    ['shared_fs = "none"', 'virtio-9p or virtio-fs'],
    ['shared_fs = "virtio-fs"\nvirtio_fs_daemon = "/bin/true"\nvirtio_fs_cache_size = 1024', 'DAX'],
  ])('%s is refused with a clear error', async (lines, message) => {
    writeFileSync(join(dir, 'nofs.toml'), toml().replace('shared_fs = "virtio-9p"', lines));
    const r = rules();
    const rq = req('nofs', bundle('nofs'), { options: { configPath: join(dir, 'nofs.toml') } });
    await expect(r.configure(rq, await r.validate(rq))).rejects.toMatchObject({
      code: 'InvalidArgument',
      message: expect.stringContaining(message),
    });
  });

  describe('config.json mounts, resources and hostname', () => {
    const vols = join(dir, 'bundles', 'vols');
    mkdirSync(join(vols, 'ro-dir'), { recursive: true });
    mkdirSync(join(vols, 'rw-dir'), { recursive: true });
    writeFileSync(join(vols, 'ro-file'), 'x');
    writeFileSync(join(vols, 'rw-file'), 'y');
    const binds = [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/data/ro', type: 'bind', source: join(vols, 'ro-dir'), options: ['rbind', 'ro'] },
      { destination: '/data/rw', type: 'bind', source: join(vols, 'rw-dir'), options: ['rbind', 'rw'] },
      { destination: '/etc/ro.conf', type: 'none', source: join(vols, 'ro-file'), options: ['bind', 'ro'] },
      { destination: '/etc/rw.conf', type: 'bind', source: join(vols, 'rw-file'), options: ['bind'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'size=1m'] },
    ];
    const bindSteps = (share: string) =>
      [
        [1, 'ro-dir', true],
        [2, 'rw-dir', false],
        [3, 'ro-file', true],
        [4, 'rw-file', false],
      ].map(([n, name, readonly]) => ({
        phase: 'mounting',
        kind: 'bind',
        args: { source: join(vols, name as string), target: `${share}/mounts/${n}-${name}`, readonly },
      }));
    const guestMounts = (cid: string) => [
      { source: 'proc', target: '/proc', fstype: 'proc', flags: 0, data: '' },
      {
        source: `/run/corral/shared/${cid}/mounts/1-ro-dir`,
        target: '/data/ro',
        fstype: 'bind',
        flags: 0x5001,
        data: '',
      },
      {
        source: `/run/corral/shared/${cid}/mounts/2-rw-dir`,
        target: '/data/rw',
        fstype: 'bind',
        flags: 0x5000,
        data: '',
      },
      {
        source: `/run/corral/shared/${cid}/mounts/3-ro-file`,
        target: '/etc/ro.conf',
        fstype: 'bind',
        flags: 0x1001,
        data: '',
        file: true,
      },
      {
        source: `/run/corral/shared/${cid}/mounts/4-rw-file`,
        target: '/etc/rw.conf',
        fstype: 'bind',
        flags: 0x1000,
        data: '',
        file: true,
      },
      { source: 'tmpfs', target: '/tmp', fstype: 'tmpfs', flags: 2, data: 'size=1m' },
    ];

    it('a sandbox: host binds into its share after the rootfs bind, guest mounts, limits, hostname', async () => {
      const r = rules({ CORRAL_CONF_FILE: join(dir, 'env.toml') });
      const rq = req('vsb', bundle('vsb', {}, { mounts: binds, hostname: 'box' }));
      const plan = await r.configure(rq, await r.validate(rq));
      const share = join(dir, 'run/sandboxes/vsb/shared/vsb');
      const kinds = ['mkdir', 'bind', 'bind', 'bind', 'bind', 'bind', 'createNetns', 'setupNetwork', 'boot'];
      expect(plan.steps.map((s) => s.kind)).toEqual(kinds);
      expect(plan.steps[1]!.args).toMatchObject({ target: `${share}/rootfs` });
      expect(plan.steps.slice(2, 6)).toEqual(bindSteps(share));
      expect(plan.setup).toEqual({
        mounts: guestMounts('vsb'),
        limits: [{ file: 'memory.max', value: String(1 << 30) }],
        hostname: 'box',
      });
      expect(plan).not.toHaveProperty('mounts');
    });

    it('a read-only root is shared writable; the guest makes it read-only after the mounts', async () => {
      const r = rules({ CORRAL_CONF_FILE: join(dir, 'env.toml') });
      const rq = req('vro', bundle('vro', {}, { root: { path: 'rootfs', readonly: true } }));
      const plan = await r.configure(rq, await r.validate(rq));
      expect(plan.steps.find((s) => s.kind === 'bind')!.args).toMatchObject({
        target: join(dir, 'run/sandboxes/vro/shared/vro/rootfs'),
        readonly: false,
      });
      expect(plan.setup).toMatchObject({ rootReadonly: true });
      const rw = req('vrw', bundle('vrw'));
      expect((await r.configure(rw, await r.validate(rw))).setup).not.toHaveProperty('rootReadonly');
    });

    it("a pod container: the same, in its sandbox's share; local emptyDirs are made there", async () => {
      const r = rules({ CORRAL_CONF_FILE: join(dir, 'env.toml') });
      const sb = req('vsb2', bundle('vsb2', { 'io.kubernetes.cri.container-type': 'sandbox' }));
      const sbPlan = await r.configure(sb, await r.validate(sb));
      const ed = join(dir, 'bundles/pods/volumes/kubernetes.io~empty-dir/scratch');
      mkdirSync(ed, { recursive: true });
      const c = req(
        'vc1',
        bundle(
          'vc1',
          { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'vsb2' },
          { mounts: [...binds, { destination: '/scratch', type: 'bind', source: ed, options: ['rbind'] }] },
        ),
      );
      const plan = await r.configure(c, await r.validate(c), { pid: 1, plan: sbPlan });
      const share = join(dir, 'run/sandboxes/vsb2/shared/vc1');
      expect(plan.steps.slice(1)).toEqual([
        ...bindSteps(share),
        { phase: 'mounting', kind: 'mkdir', args: { path: `${share}/mounts/6-scratch`, mode: 0o777 } },
      ]);
      expect(plan.setup?.mounts).toEqual([
        ...guestMounts('vc1'),
        {
          source: '/run/corral/shared/vc1/mounts/6-scratch',
          target: '/scratch',
          fstype: 'bind',
          flags: 0x5000,
          data: '',
        },
      ]);
    });

    it('a bind source that is missing is NotFound; one outside the bundle roots is InvalidArgument', async () => {
      const r = rules({ CORRAL_CONF_FILE: join(dir, 'env.toml') });
      const missing = req('vbad1', bundle('vbad1', {}, { mounts: [{ ...binds[1], source: join(vols, 'nope') }] }));
      await expect(r.configure(missing, await r.validate(missing))).rejects.toMatchObject({
        code: 'NotFound',
        message: `config.json mounts[0] (destination "/data/ro"): bind source ${join(vols, 'nope')} does not exist`,
      });
      const outside = req('vbad2', bundle('vbad2', {}, { mounts: [{ ...binds[1], source: dir }] }));
      await expect(r.configure(outside, await r.validate(outside))).rejects.toMatchObject({
        code: 'InvalidArgument',
        message: expect.stringContaining('is outside the allowed bundle roots'),
      });
      const pids = req('vbad3', bundle('vbad3', {}, { linux: { resources: { cpu: { period: 5 } } } }));
      await expect(r.configure(pids, await r.validate(pids))).rejects.toMatchObject({
        code: 'InvalidArgument',
        message: expect.stringContaining('linux.resources.cpu.period must be 1000..1000000'),
      });
    });
  });
});

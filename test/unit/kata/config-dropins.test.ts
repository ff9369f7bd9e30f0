import { chmod, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadRuntimeConfig } from '../../../src/kata/config-load.ts';
import { resolveConfigPath } from '../../../src/kata/config-resolve.ts';
import { expectError } from './expect-error.ts';
import { host } from './config-fixture.ts';
import { memFs } from './mem-fs.ts';

/** Drop-ins on a real file system: ordering and merging are the point here. */
describe('config.d drop-ins (§3.2 step 2)', () => {
  let dir: string;
  let conf: string;
  let main: string;
  const write = (name: string, text: string) => writeFile(path.join(dir, 'config.d', name), text);
  const load = () => loadRuntimeConfig(conf, { host, requireVsock: false });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'corral-conf-'));
    for (const f of ['qemu', 'vmlinux', 'virtiofsd']) await writeFile(path.join(dir, f), f);
    await writeFile(path.join(dir, 'image'), Buffer.alloc(4096));
    await mkdir(path.join(dir, 'config.d'));
    conf = path.join(dir, 'configuration.toml');
    main = `[hypervisor.qemu]
path = "${dir}/qemu"
kernel = "${dir}/vmlinux"
image = "${dir}/image"
virtio_fs_daemon = "${dir}/virtiofsd"
default_vcpus = 2
default_memory = 4096
enable_annotations = ["enable_iommu"]
kernel_params = "quiet"

[agent.kata]
dial_timeout = 45

[runtime]
enable_debug = true
internetworking_model = "tcfilter"
`;
    await writeFile(conf, main);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('no drop-ins: the main file alone', async () => {
    const c = await load();
    expect(c.hypervisor).toMatchObject({ defaultVcpus: 2, defaultMemory: 4096 });
  });

  it('a missing config.d directory is fine', async () => {
    await rm(path.join(dir, 'config.d'), { recursive: true });
    expect((await load()).hypervisor.defaultVcpus).toBe(2);
  });

  it('[hypervisor.qemu] keys merge one by one; the other keys of the table survive', async () => {
    await write('10-cpus.toml', '[hypervisor.qemu]\ndefault_vcpus = 4\n');
    const c = await load();
    expect(c.hypervisor).toMatchObject({
      defaultVcpus: 4,
      defaultMemory: 4096,
      path: `${dir}/qemu`,
      enableAnnotations: ['enable_iommu'],
    });
  });

  it('files apply in lexical order, so the last one wins ("10-" sorts before "9-")', async () => {
    await write('9-late.toml', '[hypervisor.qemu]\ndefault_vcpus = 3\n');
    await write('10-early.toml', '[hypervisor.qemu]\ndefault_vcpus = 5\ndefault_memory = 1024\n');
    const c = await load();
    expect(c.hypervisor).toMatchObject({ defaultVcpus: 3, defaultMemory: 1024 });
  });

  it('arrays are replaced, not appended', async () => {
    await write('50.toml', '[hypervisor.qemu]\nenable_annotations = ["default_vcpus"]\n');
    expect((await load()).hypervisor.enableAnnotations).toEqual(['default_vcpus']);
  });

  it('[agent.X] keys merge one by one', async () => {
    await write('50.toml', '[agent.kata]\nenable_debug = true\n');
    expect((await load()).agent).toMatchObject({ debug: true, dialTimeout: 45 });
  });

  it('[runtime] keys merge one by one', async () => {
    await write('50.toml', '[runtime]\ninternetworking_model = "none"\ndisable_new_netns = true\n');
    expect((await load()).runtime).toMatchObject({
      enableDebug: true,
      internetworkingModel: 'none',
      disableNewNetns: true,
    });
  });

  it("kernel_params from a drop-in replace the main file's string", async () => {
    await write('50.toml', '[hypervisor.qemu]\nkernel_params = "debug"\n');
    const keys = (await load()).hypervisor.kernelParams.map((p) => p.key);
    expect(keys).toContain('debug');
    expect(keys).not.toContain('quiet');
  });

  it('a drop-in that adds a second hypervisor table makes the config invalid', async () => {
    await write('50.toml', '[hypervisor.clh]\npath = "/x"\n');
    await expectError(
      () => load(),
      'InvalidArgument',
      `${conf}: configuration file contains several hypervisor sections ("clh", "qemu"); exactly one is allowed`,
    );
  });

  it('a drop-in with an invalid hypervisor section name', async () => {
    await write('50.toml', '[hypervisor.kvm]\npath = "/x"\n');
    await expectError(
      () => load(),
      'InvalidArgument',
      `${conf}: configuration file contains invalid hypervisor section: "kvm"`,
    );
  });

  it('malformed TOML in a drop-in → "error decoding file <f>: ..."', async () => {
    const f = path.join(dir, 'config.d', '50.toml');
    await write('50.toml', '[hypervisor.qemu\n');
    await expectError(
      () => load(),
      'InvalidArgument',
      new RegExp(
        `^error decoding file ${JSON.stringify(f).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: Invalid TOML document`,
      ),
    );
  });

  it('a wrong type in a drop-in names the file and the key', async () => {
    const f = path.join(dir, 'config.d', '50.toml');
    await write('50.toml', '[hypervisor.qemu]\ndefault_vcpus = "4"\n');
    await expectError(
      () => load(),
      'InvalidArgument',
      `error decoding file ${JSON.stringify(f)}: ` +
        'hypervisor.qemu.default_vcpus must be an integer from -2147483648 to 2147483647',
    );
  });

  it('unknown keys in a drop-in are only warnings', async () => {
    const f = path.join(dir, 'config.d', '50.toml');
    await write('50.toml', '[hypervisor.qemu]\nshiny = true\n');
    expect((await load()).warnings).toEqual([`${f}: unknown configuration key hypervisor.qemu.shiny ignored`]);
  });

  it("drop-ins sit next to the RESOLVED main file (a symlinked config uses the target's config.d)", async () => {
    const other = await mkdtemp(path.join(tmpdir(), 'corral-conf-link-'));
    try {
      await symlink(conf, path.join(other, 'configuration.toml'));
      await mkdir(path.join(other, 'config.d'));
      await writeFile(path.join(other, 'config.d', '50.toml'), '[hypervisor.qemu]\ndefault_vcpus = 1\n');
      await write('50.toml', '[hypervisor.qemu]\ndefault_vcpus = 7\n');
      const { path: resolved } = await resolveConfigPath({
        configPath: path.join(other, 'configuration.toml'),
        env: {},
        allowedConfigDirs: [],
        defaultPaths: [],
      });
      expect(resolved).toBe(await realpath(conf));
      expect((await loadRuntimeConfig(resolved, { host, requireVsock: false })).hypervisor.defaultVcpus).toBe(7);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('an unreadable drop-in → "error reading file <f>: ..."', async () => {
    if (process.getuid?.() === 0) {
      // root reads anything: use the injected fs for the same rule.
      const fs = memFs({ '/c/configuration.toml': main, '/c/config.d/50.toml': { error: 'EACCES' } });
      await expectError(
        () => loadRuntimeConfig('/c/configuration.toml', { fs, host, requireVsock: false }),
        'InvalidArgument',
        'error reading file "/c/config.d/50.toml": open /c/config.d/50.toml: permission denied',
      );
      return;
    }
    await write('50.toml', '[runtime]\n');
    await chmod(path.join(dir, 'config.d', '50.toml'), 0o000);
    await expectError(() => load(), 'InvalidArgument', /^error reading file ".*50\.toml": open .*: permission denied$/);
  });

  it('a config.d that cannot be read → "error reading <dir> directory: ..."', async () => {
    const fs = memFs({ '/c/configuration.toml': main, '/c/config.d': { error: 'EACCES' } });
    await expectError(
      () => loadRuntimeConfig('/c/configuration.toml', { fs, host, requireVsock: false }),
      'InvalidArgument',
      'error reading "/c/config.d" directory: open /c/config.d: permission denied',
    );
  });
});

/** A valid qemu configuration on an in-memory file system, for the config tests. */
import { loadRuntimeConfig, type LoadOptions } from '../../../src/kata/config-load.ts';
import type { HostInfo } from '../../../src/kata/host.ts';
import { type MemEntry, memFs } from './mem-fs.ts';

export const MiB = 1_048_576;
export const CONF = '/etc/corral/configuration.toml';
export const QEMU = '/usr/bin/qemu-system-x86_64';
export const KERNEL = '/usr/share/kata-containers/vmlinux.container';
export const IMAGE = '/usr/share/kata-containers/kata-containers.img';
export const INITRD = '/usr/share/kata-containers/kata-containers-initrd.img';
export const VIRTIOFSD = '/usr/libexec/virtiofsd';
export const host: HostInfo = { cpus: 8, memMiB: 16384, arch: 'x64', maxVcpus: 240 };

export const ASSETS: Record<string, MemEntry> = {
  [QEMU]: 'qemu',
  [KERNEL]: 'kernel',
  [IMAGE]: { size: 256 * MiB },
  [INITRD]: { size: 20 * MiB },
  [VIRTIOFSD]: 'virtiofsd',
  '/dev/vhost-vsock': 'vsock',
};

/** `[hypervisor.qemu]` with the required keys; extra lines go inside the table. */
export const qemuToml = (extra = '', opts: { image?: boolean } = {}) => `
[hypervisor.qemu]
path = "${QEMU}"
kernel = "${KERNEL}"
${opts.image === false ? '' : `image = "${IMAGE}"`}
virtio_fs_daemon = "${VIRTIOFSD}"
${extra}
`;

/** Load `toml` as the main file, with the assets plus `files`. */
export const load = (toml: string, files: Record<string, MemEntry> = {}, opts: LoadOptions = {}) =>
  loadRuntimeConfig(CONF, { fs: memFs({ ...ASSETS, [CONF]: toml, ...files }), host, ...opts });

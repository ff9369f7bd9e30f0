/**
 * The `[hypervisor.qemu]` table to a {@link HypervisorConfig} (Kata's `newQemuHypervisorConfig`,
 * kata-create-spec.md §3.2): exactly one `[hypervisor.*]` table, which must be `qemu`; paths resolved
 * (they must exist), values checked, compiled defaults applied, host limits taken into account.
 */
import { err } from '../errors.ts';
import { withDefaults } from './config-decode.ts';
import {
  BLOCK_DEVICE_AIO,
  BLOCK_DEVICE_DRIVERS,
  DEFAULT_MEMORY_MIB,
  EXTRA_MONITOR_SOCKETS,
  HYPERVISOR_DEFAULTS,
  HYPERVISOR_KEYS,
  HYPERVISOR_NAMES,
  MAX_PCI_BRIDGES,
  MIN_MEMORY_MIB,
  PCIE_PORTS,
  SHARED_FS,
  type HypervisorConfig,
  type Raw,
} from './config-types.ts';
import type { Doc } from './config-files.ts';
import { type KataFs, resolvePath } from './fs.ts';
import type { HostInfo } from './host.ts';
import { goList, oneOf, prefixed } from './util.ts';

const commaList = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .join(',');

/** `newQemuHypervisorConfig`: paths resolved (they must exist), values checked, defaults applied. */
export async function qemuConfig(
  raw: Raw<typeof HYPERVISOR_KEYS>,
  fs: KataFs,
  host: HostInfo,
  requireVsock: boolean,
): Promise<HypervisorConfig> {
  const h: Omit<HypervisorConfig, 'kernelParams'> = withDefaults(HYPERVISOR_KEYS, raw, HYPERVISOR_DEFAULTS);
  const opt = (p: string) => (p === '' ? Promise.resolve('') : resolvePath(fs, p));
  const resolved = {
    path: await resolvePath(fs, h.path),
    kernel: await resolvePath(fs, h.kernel),
    initrd: await opt(h.initrd),
    image: await opt(h.image),
    pflashes: await Promise.all(
      h.pflashes.map((p) =>
        resolvePath(fs, p).catch((e: unknown) => {
          throw prefixed(`failed to resolve path: ${p}`, e);
        }),
      ),
    ),
    firmware: await opt(h.firmware),
    firmwareVolume: await opt(h.firmwareVolume),
  };
  const check = (ok: boolean, msg: string) => {
    if (!ok) throw err.invalid(msg);
  };
  check(
    oneOf(BLOCK_DEVICE_DRIVERS, h.blockDeviceDriver),
    `Invalid hypervisor block storage driver ${h.blockDeviceDriver} specified ` +
      `(supported drivers: ${goList(BLOCK_DEVICE_DRIVERS)})`,
  );
  check(
    oneOf(BLOCK_DEVICE_AIO, h.blockDeviceAio),
    `Invalid hypervisor block storage I/O mechanism ${h.blockDeviceAio} specified ` +
      `(supported AIO: ${goList(BLOCK_DEVICE_AIO)})`,
  );
  check(
    oneOf(SHARED_FS, h.sharedFs),
    `Invalid hypervisor shared file system ${h.sharedFs} specified (supported file systems: ${goList(SHARED_FS)})`,
  );
  check(
    !h.sharedFs.startsWith('virtio-fs') || h.virtioFsDaemon !== '',
    `cannot enable ${h.sharedFs} without daemon path in configuration file`,
  );
  if (requireVsock && !(await fs.exists('/dev/vhost-vsock'))) {
    throw err.precondition("host system doesn't support vsock: stat /dev/vhost-vsock: no such file or directory");
  }
  check(
    h.extraMonitorSocket === '' || oneOf(EXTRA_MONITOR_SOCKETS, h.extraMonitorSocket),
    `Invalid hypervisor extra monitor socket ${h.extraMonitorSocket} specified ` +
      `(supported values: ${goList(EXTRA_MONITOR_SOCKETS)})`,
  );
  for (const [k, v] of [
    ['hot_plug_vfio', h.hotPlugVfio],
    ['cold_plug_vfio', h.coldPlugVfio],
  ] as const) {
    check(oneOf(PCIE_PORTS, v), `invalid ${k} value ${JSON.stringify(v)} (allowed: ${PCIE_PORTS.join(', ')})`);
  }
  for (const re of h.enableAnnotations) {
    try {
      new RegExp(re);
    } catch {
      throw err.invalid(`enable_annotations entry ${JSON.stringify(re)} is not a valid regular expression`);
    }
  }
  const cpus = Math.min(host.cpus, host.maxVcpus);
  const v = h.defaultVcpus;
  const reqMax = h.defaultMaxvcpus === 0 || h.defaultMaxvcpus >= host.cpus ? host.cpus : h.defaultMaxvcpus;
  return {
    ...h,
    ...resolved,
    machineAccelerators: commaList(h.machineAccelerators),
    cpuFeatures: commaList(h.cpuFeatures),
    disableImageNvdimm:
      h.disableImageNvdimm ||
      h.machineType === 'microvm' ||
      (host.arch === 'arm64' && resolved.firmware === '' && resolved.pflashes.length === 0),
    defaultVcpus: v < 0 || v > cpus ? cpus : v === 0 ? 1 : v,
    defaultMaxvcpus: Math.min(reqMax, host.maxVcpus),
    defaultMemory: h.defaultMemory < MIN_MEMORY_MIB ? DEFAULT_MEMORY_MIB : h.defaultMemory,
    defaultMaxmemory: h.defaultMaxmemory === 0 || h.defaultMaxmemory > host.memMiB ? host.memMiB : h.defaultMaxmemory,
    defaultBridges: Math.min(h.defaultBridges, MAX_PCI_BRIDGES),
    kernelParams: [],
  };
}

/** The `[hypervisor.*]` section to use: exactly one, and it must be `qemu`. */
export function hypervisorTable(tables: Doc['hypervisor']): Raw<typeof HYPERVISOR_KEYS> {
  const names = Object.keys(tables).sort();
  const invalid = names.find((n) => !oneOf(HYPERVISOR_NAMES, n));
  const fail = (m: string) => err.invalid(m);
  if (invalid !== undefined)
    throw fail(`configuration file contains invalid hypervisor section: ${JSON.stringify(invalid)}`);
  if (names.length === 0)
    throw fail('configuration file contains no hypervisor section; Corral needs [hypervisor.qemu]');
  if (names.length > 1) {
    throw fail(
      `configuration file contains several hypervisor sections ` +
        `(${names.map((n) => JSON.stringify(n)).join(', ')}); exactly one is allowed`,
    );
  }
  if (names[0] !== 'qemu')
    throw fail(`hypervisor ${JSON.stringify(names[0])} is not supported by Corral (only "qemu")`);
  return tables.qemu ?? {};
}
